"""Segmentation quality in world units: Dice, HD95 and average surface distance in mm, volumes in mL and the
volume error in % of the reference volume."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

from atriumseg.pipeline.io.geometry import voxel_spacing, voxel_volume_ml


@dataclass(frozen=True)
class CaseMetrics:
    """Agreement of one predicted mask with its reference.

    ``volume_error_pct`` is ``100 * (predicted - true) / true`` (negative: the volume is under-estimated),
    ``abs_volume_error_pct`` its magnitude; both NaN when the reference is empty.
    """

    dice: float
    hd95_mm: float
    asd_mm: float
    predicted_ml: float
    true_ml: float
    volume_error_pct: float
    abs_volume_error_pct: float


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks of the same grid (1.0 when both are empty), without the distances
    :func:`case_metrics` also computes: for comparisons of many or large masks."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def volume_error_pct(predicted_ml: float, true_ml: float) -> float:
    """Signed volume error in % of the reference volume; NaN for an empty reference."""
    return 100.0 * (predicted_ml - true_ml) / true_ml if true_ml > 0 else math.nan


def _surface_distances(p: torch.Tensor, t: torch.Tensor, spacing: tuple[float, ...]) -> tuple[float, float]:
    """HD95 and symmetric ASD in mm of two non-empty masks ``(1, 1, X, Y, Z)``.

    MONAI 1.5-1.6 passes its own deprecated ``always_return_as_numpy`` to ``get_mask_edges`` inside these
    metrics; that one FutureWarning (nothing the caller can change) is silenced here and nowhere else.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        hd95 = compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(p, t, include_background=True, symmetric=True, spacing=spacing)
    return float(hd95[0, 0]), float(asd[0, 0])


def case_metrics(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> CaseMetrics:
    """Metrics of two binary 3D masks on the same grid, whose voxel-to-world ``affine`` gives sizes in mm.

    Surface distances are NaN when either mask is empty; Dice of two empty masks is 1.
    """
    p = torch.as_tensor(np.asarray(pred) > 0)[None, None].float()
    t = torch.as_tensor(np.asarray(truth) > 0)[None, None].float()
    voxel_ml = voxel_volume_ml(affine)
    dice = float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])
    hd95, asd = _surface_distances(p, t, voxel_spacing(affine)) if p.any() and t.any() else (math.nan, math.nan)
    predicted_ml, true_ml = float(p.sum()) * voxel_ml, float(t.sum()) * voxel_ml
    error = volume_error_pct(predicted_ml, true_ml)
    return CaseMetrics(
        dice=dice, hd95_mm=hd95, asd_mm=asd, predicted_ml=predicted_ml, true_ml=true_ml,
        volume_error_pct=error, abs_volume_error_pct=abs(error),
    )


@dataclass(frozen=True)
class Summary:
    """Mean, median and worst case of a set of per-case metrics (means leave out NaN figures: the distance means
    cover ``distance_cases`` of the ``cases``, those where neither mask is empty)."""

    cases: int
    dice_mean: float
    dice_median: float
    dice_worst: float
    worst_case: str
    hd95_mean_mm: float
    asd_mean_mm: float
    volume_error_mean_pct: float
    abs_volume_error_mean_pct: float
    distance_cases: int


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


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
        hd95_mean_mm=_nanmean([m.hd95_mm for _, m in rows]),
        asd_mean_mm=_nanmean([m.asd_mm for _, m in rows]),
        volume_error_mean_pct=_nanmean([m.volume_error_pct for _, m in rows]),
        abs_volume_error_mean_pct=_nanmean([m.abs_volume_error_pct for _, m in rows]),
        distance_cases=sum(not math.isnan(m.hd95_mm) for _, m in rows),
    )
