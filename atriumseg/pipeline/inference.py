"""Whole-volume segmentation: preprocess, slice-wise U-Net with MONAI's SliceInferer, invert to the input grid."""

from __future__ import annotations

from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import KeepLargestConnectedComponent
from torch import nn

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_model, resolve_model_path
from atriumseg.transforms.context import StackNeighbours
from atriumseg.transforms.orientation import AssumeOrientation
from atriumseg.transforms.preprocessing import IMAGE, inference_transforms

FOCUS_STRIDE = 4  # the locating pass looks at every 4th slice
FOCUS_MARGIN_SLICES = 4  # extra slices segmented beyond the located atrium on each side
TTA_GAMMAS = (0.8, 1.25)  # intensity gamma on the [0, 1]-scaled volume
TTA_SHIFTS = ((4, 4), (-4, -4))  # in-plane voxel shifts


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return resolved


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` ('auto', 'bfloat16', 'float16', 'float32'); None means float32."""
    if precision == "float32":
        return None
    if precision in ("bfloat16", "float16"):
        return getattr(torch, precision)
    if precision != "auto":
        raise ValueError(f"precision must be auto, bfloat16, float16 or float32, got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    bf16_cpu = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return torch.bfloat16 if bf16_cpu else None


class _Logits(nn.Module):
    """The network behind autocast and channels_last, returning float32 logits."""

    def __init__(self, network: nn.Module, dtype: torch.dtype | None, device: torch.device) -> None:
        super().__init__()
        self.network, self.dtype, self.device_type = network, dtype, device.type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.network(x).float()


class Segmenter:
    """A trained model plus its preprocessing, segmenting whole 3D volumes slice by slice.

    The volume is reoriented to the card's anatomical frame, resampled in-plane, scaled,
    padded, then cut into slices along the card's plane and batched through the U-Net
    (``batch_size`` slices per forward pass). Probabilities are inverted back to the
    input's voxel grid before thresholding, so masks always have the input's geometry.
    """

    def __init__(
        self,
        network: nn.Module,
        card: ModelCard,
        device: str | torch.device = "auto",
        batch_size: int = 16,
        precision: str = "auto",
        focus: bool = True,
    ) -> None:
        self.card = card
        self.focus = focus
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval().to(memory_format=torch.channels_last)
        self._logits = _Logits(self.network, autocast_dtype(self.device, precision), self.device)
        self._pre = inference_transforms(card)
        pre = card.preprocessing
        self._stack = StackNeighbours(pre.slice_dim, pre.context)
        self._inferer = SliceInferer(
            spatial_dim=pre.slice_dim,
            roi_size=(-1, -1),
            sw_batch_size=batch_size,
            sw_device=self.device,
            device=torch.device("cpu"),
            progress=False,
        )
        self._largest = KeepLargestConnectedComponent(applied_labels=[1])

    @classmethod
    def from_path(cls, path: str | Path | None = None, **kwargs: object) -> Segmenter:
        """Load a model folder (None: the built-in default model)."""
        network, card = load_model(resolve_model_path(path))
        return cls(network, card, **kwargs)  # type: ignore[arg-type]

    def _slices(self, stacked: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._inferer(stacked[None], self._logits)[0])

    def _predict(self, volume: torch.Tensor) -> torch.Tensor:
        """Probabilities of a preprocessed volume; with ``focus`` only on the slices that hold the atrium.

        Focused inference first segments every ``FOCUS_STRIDE``-th slice, then every slice of the slab
        between the first and last slice where the atrium (the largest component found) lies, plus ``FOCUS_MARGIN_SLICES`` on
        each side; slices outside the slab are background. Each slice is predicted exactly as in a
        whole-volume pass (the network is 2D and sees the same neighbours), so inside the slab the
        result is identical. A volume where the locating pass finds nothing is segmented whole.
        """
        stacked = self._stack(volume)
        if not self.focus:
            return self._slices(stacked)
        dim = self.card.preprocessing.slice_dim + 1
        sampled = torch.arange(0, stacked.shape[dim], FOCUS_STRIDE)
        found = self._slices(stacked.index_select(dim, sampled)) > self.card.postprocessing.threshold
        if not found.any():
            return self._slices(stacked)
        atrium = self._largest(found.to(torch.uint8))[0]  # stray false positives must not widen the slab
        hits = torch.nonzero(atrium.movedim(dim - 1, 0).flatten(1).any(1))
        lo = max(0, int(sampled[hits[0]]) - FOCUS_STRIDE - FOCUS_MARGIN_SLICES)
        hi = min(stacked.shape[dim], int(sampled[hits[-1]]) + FOCUS_STRIDE + FOCUS_MARGIN_SLICES + 1)
        prob = torch.zeros((1, *stacked.shape[1:]), dtype=torch.float32)
        slab = (slice(None),) * dim + (slice(lo, hi),)
        prob[slab] = self._slices(stacked[slab])
        return prob

    def _predict_tta(self, volume: torch.Tensor) -> torch.Tensor:
        """Mean probability over gamma changes and in-plane shifts (never flips: the atrium has a side)."""
        in_plane = tuple(d + 1 for d in range(3) if d != self.card.preprocessing.slice_dim)
        probs = [self._predict(volume)]
        probs += [self._predict(volume.clamp(0.0, 1.0) ** gamma) for gamma in TTA_GAMMAS]
        for shift in TTA_SHIFTS:
            moved = self._predict(torch.roll(volume, shifts=shift, dims=in_plane))
            probs.append(torch.roll(moved, shifts=tuple(-s for s in shift), dims=in_plane))
        return torch.stack(probs).mean(0)

    def probabilities(
        self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False
    ) -> MetaTensor:
        """Left-atrium probability ``(1, X, Y, Z)`` on the voxel grid of ``image`` (a channel-first MetaTensor).

        With ``tta`` the probability is averaged over test-time augmentations (5 passes).
        """
        source = image if isinstance(image, MetaTensor) else MetaTensor(image)
        tensor = torch.nan_to_num(source.float(), nan=0.0, posinf=0.0, neginf=0.0)
        if assume_orientation:
            tensor = AssumeOrientation(assume_orientation)(tensor)
        prepared = self._pre({IMAGE: tensor})[IMAGE]
        volume = prepared.as_tensor()
        with torch.inference_mode():
            predicted = self._predict_tta(volume) if tta else self._predict(volume)
        prob = MetaTensor(predicted.clone(), meta=prepared.meta)
        prob.applied_operations = prepared.applied_operations
        restored = self._pre.inverse({IMAGE: prob})[IMAGE]
        return MetaTensor(restored.as_tensor().clamp_(0.0, 1.0), meta=source.meta)

    def mask_from_probabilities(self, prob: MetaTensor) -> MetaTensor:
        """Threshold and clean up a probability map; uint8 with the same metadata."""
        post = self.card.postprocessing
        mask = (prob.as_tensor() > post.threshold).to(torch.uint8)
        if post.largest_component and mask.any():
            box = (slice(None), *_bounding_box(mask[0]))  # labelling only the box is exact and much cheaper
            mask[box] = self._largest(mask[box]).to(torch.uint8)
        return MetaTensor(mask, meta=prob.meta)

    def __call__(self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False) -> MetaTensor:
        """Binary left-atrium mask ``(1, X, Y, Z)``, uint8, with the input's geometry."""
        return self.mask_from_probabilities(self.probabilities(image, assume_orientation, tta))


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    """The smallest box holding every nonzero voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        hits = torch.nonzero(mask.any(dim=tuple(d for d in range(mask.ndim) if d != axis))).flatten()
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)
