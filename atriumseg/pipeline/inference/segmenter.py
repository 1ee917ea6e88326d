"""Whole-volume segmentation, orchestrated: preprocess, slice-wise inference, restore to the input grid, clean up.

Each step is its own piece: the MONAI preprocessing chain (``atriumseg.transforms``), the network
call (:mod:`.device`, wrapped by :mod:`.tta` on request), the slice inferers (:mod:`.focus`) and
restoration (:mod:`.restore`), held together per network by a :class:`~.member.Member`. The
:class:`Segmenter` only wires them together, and combines the members of an ensemble (:mod:`.fusion`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent
from monai.utils import ImageMetaKey
from torch import nn

from atriumseg.defaults import BATCH_SIZE
from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_model, resolve_model_path
from atriumseg.models.ensemble import is_ensemble, load_ensemble
from atriumseg.pipeline.inference.device import resolve_device
from atriumseg.pipeline.inference.focus import FocusSettings
from atriumseg.pipeline.inference.fusion import fuse
from atriumseg.pipeline.inference.member import Member
from atriumseg.pipeline.inference.regions import bounding_box
from atriumseg.pipeline.inference.restore import PROB_FLOOR
from atriumseg.pipeline.io.volumes import check_resampled_size
from atriumseg.transforms.intensity import finite_or_zero
from atriumseg.transforms.orientation import AssumeOrientation


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

    ``members``, further (network, card) pairs, make an ensemble: the first network locates the
    atrium (with ``card``'s threshold), every member segments it in its own plane and preprocessing,
    and the probabilities are combined on the input grid by ``card``'s fusion rule (their mean, or their
    mean logit); ``card``'s post-processing then applies to the result. ``card`` is then the first network's
    card with the ensemble's post-processing.
    """

    def __init__(
        self,
        network: nn.Module,
        card: ModelCard,
        device: str | torch.device = "auto",
        batch_size: int = BATCH_SIZE,
        precision: str = "auto",
        focus: bool | FocusSettings = True,
        members: Sequence[tuple[nn.Module, ModelCard]] = (),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.card = card
        self.device = resolve_device(device)
        if not card.postprocessing.largest_component:
            focus = False  # focus keeps the atrium's neighbourhood only; a card that keeps every component sees all
        self.members = [
            Member(net, member_card, self.device, batch_size, precision, focus)
            for net, member_card in [(network, card), *members]
        ]
        self.network = self.members[0].network
        self._largest = KeepLargestConnectedComponent(applied_labels=[1])

    @classmethod
    def from_path(cls, path: str | Path | None = None, **kwargs: object) -> Segmenter:
        """Load a model folder or an ensemble folder (see :mod:`atriumseg.models.ensemble`); None: the built-in model.

        An ensemble's ``card`` is its first member's card with the ensemble's post-processing.
        """
        folder = resolve_model_path(path)
        if is_ensemble(folder):
            models, ensemble = load_ensemble(folder)
            (network, first), others = models[0], models[1:]
            card = replace(first, postprocessing=ensemble.postprocessing)
            return cls(network, card, members=others, **kwargs)  # type: ignore[arg-type]
        network, card = load_model(folder)
        return cls(network, card, **kwargs)  # type: ignore[arg-type]

    def probabilities(
        self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False
    ) -> MetaTensor:
        """Left-atrium probability ``(1, X, Y, Z)`` on the voxel grid of ``image`` (a channel-first MetaTensor).

        With ``tta`` the probability is averaged over test-time augmentations (5 passes), inside
        each focusing step. Values below ``PROB_FLOOR`` (0.01) are 0: only the atrium's
        neighbourhood is resampled. An ensemble combines its members' probabilities
        (:meth:`member_probabilities`) by its card's ``fusion`` (:func:`~.fusion.fuse`).
        """
        source = image if isinstance(image, MetaTensor) else MetaTensor(image)
        total = fuse(self.member_probabilities(source, assume_orientation, tta), self.card.postprocessing.fusion)
        total[total < self._floor] = 0.0  # the map's floor, once the members' raw values are combined (the mask is
        # the same either way: the threshold is above the floor; zeroing each member first would shrink the mean)
        return MetaTensor(total.clamp_(0.0, 1.0), meta=source.meta)

    def member_probabilities(
        self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False
    ) -> Iterator[torch.Tensor]:
        """Each member's probabilities ``(1, X, Y, Z)`` on the voxel grid of ``image``, one at a time and before
        fusion (a single model has one member), to study how members combine; see :meth:`probabilities`. The first
        member locates the atrium; the others segment the box where it found it.

        A volume that a member would resample beyond the size bound is refused by this call, before any map is
        asked for, naming the tensor's file (MONAI's ``filename_or_obj``, set by
        :func:`~atriumseg.pipeline.io.volumes.read_image` and by ``LoadImage``) or else "the image".
        """
        source = image if isinstance(image, MetaTensor) else MetaTensor(image)
        tensor = AssumeOrientation(assume_orientation)(source) if assume_orientation else source  # no copy
        name = source.meta.get(ImageMetaKey.FILENAME_OR_OBJ) or "the image"  # the file, where the reader named it
        self._check_size(tensor, tensor.affine.numpy(), str(name))  # before any float copy of a huge volume
        tensor = finite_or_zero(tensor.float())  # after the cast: a float64 voxel beyond float32 is infinite
        return self._member_maps(tensor, tta)

    def _member_maps(self, tensor: MetaTensor, tta: bool) -> Iterator[torch.Tensor]:
        """Each member's map of ``tensor`` (checked, float32, in the input's orientation), computed as it is asked
        for."""
        first, floor = self.members[0], self._floor
        framed = {first.frame_key: first.frame(tensor)}  # members in the same frame resample the volume once
        prob, near = first.probabilities(framed[first.frame_key], tensor, tta, floor)
        yield prob
        for member in self.members[1:]:  # each focused on the box where the first found the atrium
            if member.frame_key not in framed:
                framed[member.frame_key] = member.frame(tensor)
            yield member.probabilities(framed[member.frame_key], tensor, tta, floor, near)[0]

    @property
    def _floor(self) -> float:
        """Probabilities below this are 0 in the map (the atrium's neighbourhood only is resampled)."""
        return min(PROB_FLOOR, self.card.postprocessing.threshold)

    def _check_size(self, tensor: torch.Tensor, affine: np.ndarray, name: str) -> None:
        """Refuse (:class:`~atriumseg.pipeline.io.volumes.ImageReadError`) a volume that any member would resample
        beyond the size bound, before any member resamples it; ``affine`` describes its anatomy."""
        for pre in {m.frame_key: m.card.preprocessing for m in self.members}.values():
            check_resampled_size(tensor, affine, pre.pixdim, pre.orientation, name)

    def threshold(self, prob: MetaTensor, level: float | None = None) -> MetaTensor:
        """The probability map thresholded by the card (or at ``level``, to study others), uint8, before clean-up."""
        level = self.card.postprocessing.threshold if level is None else level
        return MetaTensor((prob.as_tensor() > level).to(torch.uint8), meta=prob.meta)

    def clean(self, raw: MetaTensor) -> MetaTensor:
        """The card's clean-up of a thresholded mask (keeping the largest component); uint8, same metadata."""
        mask = raw.as_tensor().clone()
        if self.card.postprocessing.largest_component and mask.any():
            box = (slice(None), *bounding_box(mask[0]))  # labelling only the box is exact and much cheaper
            mask[box] = self._largest(mask[box]).to(torch.uint8)
        return MetaTensor(mask, meta=raw.meta)

    def segment(self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False) -> Segmentation:
        """Probabilities, thresholded map and cleaned mask of ``image``, all with the input's geometry."""
        prob = self.probabilities(image, assume_orientation, tta)
        raw = self.threshold(prob)
        return Segmentation(probabilities=prob, raw=raw, mask=self.clean(raw))

    def __call__(self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False) -> MetaTensor:
        """Binary left-atrium mask ``(1, X, Y, Z)``, uint8, with the input's geometry."""
        return self.segment(image, assume_orientation, tta).mask
