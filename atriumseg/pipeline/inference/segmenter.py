"""Whole-volume segmentation, orchestrated: preprocess, slice-wise inference, restore to the input grid, clean up.

Each step is its own piece: the MONAI preprocessing chain (``atriumseg.transforms``), the network
call (:mod:`.device`, wrapped by :mod:`.tta` on request), the slice inferers (:mod:`.focus`) and
restoration (:mod:`.restore`). The :class:`Segmenter` only wires them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent
from torch import nn

from atriumseg.defaults import BATCH_SIZE
from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_model, resolve_model_path
from atriumseg.pipeline.inference.device import Probabilities, autocast_dtype, resolve_device
from atriumseg.pipeline.inference.focus import FocusedSliceInference, FocusSettings, SliceInference, SliceRunner
from atriumseg.pipeline.inference.regions import bounding_box
from atriumseg.pipeline.inference.restore import PROB_FLOOR, to_input_grid
from atriumseg.pipeline.inference.tta import TestTimeAugmentation
from atriumseg.transforms.orientation import AssumeOrientation
from atriumseg.transforms.preprocessing import IMAGE, inference_transforms


@dataclass(frozen=True)
class Segmentation:
    """What one segmentation produces, all on the input's voxel grid with its metadata.

    ``probabilities`` float32 in [0, 1] (0 below 0.01); ``raw`` the thresholded map (uint8);
    ``mask`` the cleaned mask (uint8: the largest component, when the card asks for it).
    """

    probabilities: MetaTensor
    raw: MetaTensor
    mask: MetaTensor


class Segmenter:
    """A trained model plus its preprocessing, segmenting whole 3D volumes slice by slice.

    The volume is reoriented to the card's anatomical frame, resampled, scaled, padded, then cut
    into slices along the card's plane and batched through the U-Net (``batch_size`` slices per
    forward pass). With ``focus`` (the default; ``True`` or :class:`FocusSettings`) only the atrium's
    in-plane box on the slab of slices that holds it goes through the network. Probabilities are
    resampled back to the input's voxel grid before thresholding, so masks always have the input's
    geometry.
    """

    def __init__(
        self,
        network: nn.Module,
        card: ModelCard,
        device: str | torch.device = "auto",
        batch_size: int = BATCH_SIZE,
        precision: str = "auto",
        focus: bool | FocusSettings = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.card = card
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval().to(memory_format=torch.channels_last)
        self._predict = Probabilities(self.network, autocast_dtype(self.device, precision), self.device)
        self._pre = inference_transforms(card)
        pre = card.preprocessing
        runner = SliceRunner(pre.slice_dim, pre.context, batch_size, self.device)
        if focus:
            settings = focus if isinstance(focus, FocusSettings) else FocusSettings()
            self.inferer: SliceInference = FocusedSliceInference(
                runner, card.postprocessing.threshold, card.architecture.divisor, settings
            )
        else:
            self.inferer = SliceInference(runner)
        self._largest = KeepLargestConnectedComponent(applied_labels=[1])

    @classmethod
    def from_path(cls, path: str | Path | None = None, **kwargs: object) -> Segmenter:
        """Load a model folder (None: the built-in default model)."""
        network, card = load_model(resolve_model_path(path))
        return cls(network, card, **kwargs)  # type: ignore[arg-type]

    def probabilities(
        self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False
    ) -> MetaTensor:
        """Left-atrium probability ``(1, X, Y, Z)`` on the voxel grid of ``image`` (a channel-first MetaTensor).

        With ``tta`` the probability is averaged over test-time augmentations (5 passes), inside
        each focusing step. Values below ``PROB_FLOOR`` (0.01) are 0: only the atrium's
        neighbourhood is resampled.
        """
        source = image if isinstance(image, MetaTensor) else MetaTensor(image)
        tensor = source.float()
        if source.is_floating_point():
            tensor = torch.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0)
        if assume_orientation:
            tensor = AssumeOrientation(assume_orientation)(tensor)
        prepared = self._pre({IMAGE: tensor})[IMAGE]
        slice_mm = float(prepared.pixdim[self.card.preprocessing.slice_dim])
        predict = TestTimeAugmentation(self._predict) if tta else self._predict
        crop = self.inferer(prepared.as_tensor(), predict, slice_mm=slice_mm)
        floor = min(PROB_FLOOR, self.card.postprocessing.threshold)
        restored = to_input_grid(crop.prob, crop.region, prepared, tensor, floor)
        return MetaTensor(restored.clamp_(0.0, 1.0), meta=source.meta)

    def threshold(self, prob: MetaTensor) -> MetaTensor:
        """The probability map thresholded by the card, uint8, before any clean-up."""
        return MetaTensor((prob.as_tensor() > self.card.postprocessing.threshold).to(torch.uint8), meta=prob.meta)

    def clean(self, raw: MetaTensor) -> MetaTensor:
        """The card's clean-up of a thresholded mask (keeping the largest component); uint8, same metadata."""
        mask = raw.as_tensor().clone()
        if self.card.postprocessing.largest_component and mask.any():
            box = (slice(None), *bounding_box(mask[0]))  # labelling only the box is exact and much cheaper
            mask[box] = self._largest(mask[box]).to(torch.uint8)
        return MetaTensor(mask, meta=raw.meta)

    def mask_from_probabilities(self, prob: MetaTensor) -> MetaTensor:
        """Threshold and clean up a probability map; uint8 with the same metadata."""
        return self.clean(self.threshold(prob))

    def segment(self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False) -> Segmentation:
        """Probabilities, thresholded map and cleaned mask of ``image``, all with the input's geometry."""
        prob = self.probabilities(image, assume_orientation, tta)
        raw = self.threshold(prob)
        return Segmentation(probabilities=prob, raw=raw, mask=self.clean(raw))

    def __call__(self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False) -> MetaTensor:
        """Binary left-atrium mask ``(1, X, Y, Z)``, uint8, with the input's geometry."""
        return self.segment(image, assume_orientation, tta).mask
