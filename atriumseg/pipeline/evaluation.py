"""Segmentation quality in world units: Dice, HD95 and average surface distance in mm, volumes in mL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance


@dataclass(frozen=True)
class CaseMetrics:
    """Agreement of one predicted mask with its reference."""

    dice: float
    hd95_mm: float
    asd_mm: float
    predicted_ml: float
    true_ml: float


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm from a 4x4 affine (rotations and flips allowed)."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def case_metrics(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> CaseMetrics:
    """Metrics of two binary 3D masks on the same grid with voxel ``spacing`` in mm.

    Surface distances are NaN when either mask is empty; Dice of two empty masks is 1.
    """
    p = torch.as_tensor(np.asarray(pred) > 0)[None, None].float()
    t = torch.as_tensor(np.asarray(truth) > 0)[None, None].float()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    dice = float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])
    if p.any() and t.any():
        hd95 = float(compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing)[0, 0])
        asd = float(
            compute_average_surface_distance(p, t, include_background=True, symmetric=True, spacing=spacing)[0, 0]
        )
    else:
        hd95 = asd = math.nan
    return CaseMetrics(
        dice=dice,
        hd95_mm=hd95,
        asd_mm=asd,
        predicted_ml=float(p.sum()) * voxel_ml,
        true_ml=float(t.sum()) * voxel_ml,
    )
