"""Segmentation quality in world units: Dice, HD95 and average surface distance in mm, volumes in mL."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
from tqdm.auto import tqdm

from atriumseg.pipeline.inference import Segmenter
from atriumseg.pipeline.io import IMAGE_SUFFIXES, case_name, read_image, write_atomically

log = logging.getLogger(__name__)


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


def write_metrics_csv(rows: list[tuple[str, CaseMetrics]], path: Path) -> Path:
    """One line per case: case, dice, hd95_mm, asd_mm, predicted_ml, true_ml."""
    names = [f.name for f in fields(CaseMetrics)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", *names])
            for case, metrics in rows:
                writer.writerow([case, *(f"{getattr(metrics, n):.4f}" for n in names)])

    return write_atomically(Path(path), write)


def pair_cases(images: Path, labels: Path, cases: list[str] | None = None) -> list[tuple[str, Path, Path]]:
    """(name, image, label) for every image in ``images`` with a label of the same name in ``labels``."""
    label_by_name = {case_name(p): p for p in sorted(Path(labels).iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)}
    pairs = [
        (case_name(p), p, label_by_name[case_name(p)])
        for p in sorted(Path(images).iterdir())
        if p.name.lower().endswith(IMAGE_SUFFIXES) and case_name(p) in label_by_name
    ]
    if cases:
        missing = sorted(set(cases) - {name for name, _, _ in pairs})
        if missing:
            raise ValueError(f"cases {missing} have no image and label pair in {images} and {labels}")
        pairs = [p for p in pairs if p[0] in cases]
    if not pairs:
        raise ValueError(f"no image in {images} has a label of the same name in {labels}")
    return pairs


def evaluate(
    segmenter: Segmenter,
    pairs: list[tuple[str, Path, Path]],
    assume_orientation: str | None = None,
    show_progress: bool = True,
) -> list[tuple[str, CaseMetrics]]:
    """Segment each image exactly as users do and compare with its label on the image's own grid."""
    rows = []
    for name, image_path, label_path in tqdm(pairs, desc="evaluating", unit="case", disable=not show_progress):
        image, label = read_image(image_path), read_image(label_path)
        if tuple(image.tensor.shape) != tuple(label.tensor.shape):
            raise ValueError(f"{name}: image shape {tuple(image.tensor.shape[1:])} != label {tuple(label.tensor.shape[1:])}")
        mask = segmenter(image.tensor, assume_orientation=assume_orientation)[0].numpy()
        spacing = voxel_spacing(image.tensor.affine.numpy())
        rows.append((name, case_metrics(mask, label.tensor[0].numpy() > 0.5, spacing)))
        log.info("%s: Dice %.4f, HD95 %.2f mm, ASD %.2f mm", name, rows[-1][1].dice, rows[-1][1].hd95_mm, rows[-1][1].asd_mm)
    return rows
