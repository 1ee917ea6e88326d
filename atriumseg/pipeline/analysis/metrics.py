"""Segmentation quality in world units: Dice, HD95 and average surface distance in mm, volumes in mL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

from atriumseg.pipeline.io.geometry import voxel_spacing, voxel_volume_ml


@dataclass(frozen=True)
class CaseMetrics:
    """Agreement of one predicted mask with its reference."""

    dice: float
    hd95_mm: float
    asd_mm: float
    predicted_ml: float
    true_ml: float


def case_metrics(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> CaseMetrics:
    """Metrics of two binary 3D masks on the same grid, whose voxel-to-world ``affine`` gives sizes in mm.

    Surface distances are NaN when either mask is empty; Dice of two empty masks is 1.
    """
    spacing = voxel_spacing(affine)
    p = torch.as_tensor(np.asarray(pred) > 0)[None, None].float()
    t = torch.as_tensor(np.asarray(truth) > 0)[None, None].float()
    voxel_ml = voxel_volume_ml(affine)
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


@dataclass(frozen=True)
class Summary:
    """Mean, median and worst case of a set of per-case metrics."""

    cases: int
    dice_mean: float
    dice_median: float
    dice_worst: float
    worst_case: str
    hd95_mean_mm: float
    asd_mean_mm: float


def summarise(rows: list[tuple[str, CaseMetrics]]) -> Summary:
    """Aggregate per-case metrics; the worst case is the one with the lowest Dice."""
    if not rows:
        raise ValueError("nothing to summarise: no evaluated case")
    dice = np.array([m.dice for _, m in rows])
    worst = int(np.argmin(dice))
    return Summary(
        cases=len(rows),
        dice_mean=float(dice.mean()),
        dice_median=float(np.median(dice)),
        dice_worst=float(dice[worst]),
        worst_case=rows[worst][0],
        hd95_mean_mm=float(np.nanmean([m.hd95_mm for _, m in rows])),
        asd_mean_mm=float(np.nanmean([m.asd_mm for _, m in rows])),
    )
