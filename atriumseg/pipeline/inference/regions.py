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


def box_corners(box: Sequence[slice], affine: torch.Tensor) -> torch.Tensor:
    """World coordinates ``(8, 3)`` of the outer corners of the voxel box ``box`` (spatial axes) of a grid whose
    voxel-to-world matrix is ``affine``: voxel centres lie at integers, so the box reaches half a voxel past them."""
    corners = torch.cartesian_prod(
        *[torch.tensor([s.start - 0.5, s.stop - 0.5], dtype=torch.float64) for s in box]
    )
    affine = torch.as_tensor(affine, dtype=torch.float64)
    return corners @ affine[:3, :3].T + affine[:3, 3]


def box_on_grid(corners: torch.Tensor, affine: torch.Tensor, shape: Sequence[int]) -> tuple[slice, ...] | None:
    """The voxel box (spatial axes) of a grid of ``shape`` whose voxel centres cover the world points ``corners``;
    None when it misses the grid."""
    to_voxels = torch.linalg.inv(torch.as_tensor(affine, dtype=torch.float64))
    voxels = corners @ to_voxels[:3, :3].T + to_voxels[:3, 3]
    lo = torch.ceil(voxels.min(0).values - 1e-6).long().tolist()
    hi = (torch.floor(voxels.max(0).values + 1e-6).long() + 1).tolist()
    box = tuple(slice(max(0, a), min(n, b)) for a, b, n in zip(lo, hi, shape, strict=True))
    return None if any(s.stop <= s.start for s in box) else box
