"""One network of a Segmenter with its own preprocessing, network call and slice inferer.

A single model has one member; an ensemble has several, each seeing the volume in its own plane and
on its own grid. A member returns probabilities on the input grid, so members meet only there.
"""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from torch import nn

from atriumseg.models.card import ModelCard
from atriumseg.pipeline.inference.device import Probabilities, autocast_dtype
from atriumseg.pipeline.inference.focus import FocusedSliceInference, FocusSettings, SliceInference, SliceRunner
from atriumseg.pipeline.inference.regions import Crop, bounding_box, box_corners, box_on_grid
from atriumseg.pipeline.inference.restore import to_input_grid
from atriumseg.pipeline.inference.tta import TestTimeAugmentation
from atriumseg.transforms.preprocessing import IMAGE, frame_key, frame_transforms, padding_transforms


class Member:
    """A network and its card, ready to segment: ``network`` on ``device`` (eval, channels_last), the card's
    preprocessing chain (framing, then padding), and whole-slice or focused slice inference (``focus``: False,
    True or settings)."""

    def __init__(
        self, network: nn.Module, card: ModelCard, device: torch.device, batch_size: int, precision: str,
        focus: bool | FocusSettings,
    ) -> None:
        self.card = card
        self.network = network.to(device).eval().to(memory_format=torch.channels_last)
        self.predict = Probabilities(self.network, autocast_dtype(device, precision), device)
        self.frame_key = frame_key(card)
        self._frame = Compose(frame_transforms(card))
        self._pad = Compose(padding_transforms(card))
        pre = card.preprocessing
        runner = SliceRunner(pre.slice_dim, pre.context, batch_size, device)
        if focus:
            settings = focus if isinstance(focus, FocusSettings) else FocusSettings()
            self.inferer: SliceInference = FocusedSliceInference(
                runner, card.postprocessing.threshold, card.architecture.divisor, settings
            )
        else:
            self.inferer = SliceInference(runner)

    def frame(self, tensor: MetaTensor) -> MetaTensor:
        """``tensor`` in the card's frame (orientation, spacing, intensity window), not yet padded; members with
        the same ``frame_key`` may share it."""
        return self._frame({IMAGE: tensor})[IMAGE]

    def probabilities(
        self, framed: MetaTensor, tensor: MetaTensor, tta: bool, floor: float, near: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Probabilities ``(1, ...)`` on the voxel grid of ``tensor`` (0 outside the box around where they reach
        ``floor``, the only part resampled), and the world corners ``(8, 3)`` of the box where they pass the card's
        threshold (None if nowhere).

        ``near``, such corners from another member, tells focused inference where the atrium is, so it
        skips its own locating pass. ``framed`` is ``tensor`` through :meth:`frame` (shared by members in one frame).
        """
        prepared = self._pad({IMAGE: framed})[IMAGE]
        volume = prepared.as_tensor()
        slice_mm = float(prepared.pixdim[self.card.preprocessing.slice_dim])
        predict = TestTimeAugmentation(self.predict) if tta else self.predict
        box = box_on_grid(near, prepared.affine, volume.shape[1:]) if near is not None else None
        crop = self.inferer(volume, predict, slice_mm=slice_mm, near=box)
        return to_input_grid(crop.prob, crop.region, prepared, tensor, floor), _found(crop, prepared, self.threshold)

    @property
    def threshold(self) -> float:
        """The card's threshold, which focusing and the corners handed to other members use."""
        return self.card.postprocessing.threshold


def _found(crop: Crop, prepared: MetaTensor, threshold: float) -> torch.Tensor | None:
    """World corners of the box of ``crop`` (probabilities of a box of ``prepared``) where they pass ``threshold``."""
    above = crop.prob[0] > threshold
    if not above.any():
        return None
    spans = zip(crop.region[1:], bounding_box(above), strict=True)
    inside = [slice(r.start + s.start, r.start + s.stop) for r, s in spans]
    return box_corners(inside, prepared.affine)
