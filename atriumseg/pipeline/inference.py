"""Whole-volume segmentation: preprocess, slice-wise U-Net with MONAI's SliceInferer, invert to the input grid."""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


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
    ) -> None:
        self.card = card
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

    def probabilities(self, image: torch.Tensor, assume_orientation: str | None = None) -> MetaTensor:
        """Left-atrium probability ``(1, X, Y, Z)`` on the voxel grid of ``image`` (a channel-first MetaTensor)."""
        source = image if isinstance(image, MetaTensor) else MetaTensor(image)
        tensor = torch.nan_to_num(source.float(), nan=0.0, posinf=0.0, neginf=0.0)
        if assume_orientation:
            tensor = AssumeOrientation(assume_orientation)(tensor)
        prepared = self._pre({IMAGE: tensor})[IMAGE]
        with torch.inference_mode():
            logits = self._inferer(self._stack(prepared.as_tensor())[None], self._logits)
        prob = MetaTensor(torch.sigmoid(logits[0]).clone(), meta=prepared.meta)
        prob.applied_operations = prepared.applied_operations
        restored = self._pre.inverse({IMAGE: prob})[IMAGE]
        return MetaTensor(restored.as_tensor().clamp_(0.0, 1.0), meta=source.meta)

    def mask_from_probabilities(self, prob: MetaTensor) -> MetaTensor:
        """Threshold and clean up a probability map; uint8 with the same metadata."""
        post = self.card.postprocessing
        mask = (prob.as_tensor() > post.threshold).to(torch.uint8)
        if post.largest_component and mask.any():
            mask = self._largest(mask).to(torch.uint8)
        return MetaTensor(mask, meta=prob.meta)

    def __call__(self, image: torch.Tensor, assume_orientation: str | None = None) -> MetaTensor:
        """Binary left-atrium mask ``(1, X, Y, Z)``, uint8, with the input's geometry."""
        return self.mask_from_probabilities(self.probabilities(image, assume_orientation))
