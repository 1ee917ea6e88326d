"""Boxes of a volume, and probabilities known only inside one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Region = tuple[slice, ...]  # a box of a channel-first volume, one slice per axis


@dataclass(frozen=True)
class Crop:
    """Probabilities ``(1, ...)`` of ``region`` of a preprocessed volume; 0 everywhere else."""

    prob: torch.Tensor
    region: Region


def bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    """The smallest box holding every nonzero voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        hits = torch.nonzero(mask.any(dim=tuple(d for d in range(mask.ndim) if d != axis))).flatten()
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def translation(voxels: Sequence[float]) -> torch.Tensor:
    """The 4x4 affine that shifts voxel indices by ``voxels``."""
    shift = torch.eye(4, dtype=torch.float64)
    shift[:3, 3] = torch.tensor([float(v) for v in voxels], dtype=torch.float64)
    return shift
