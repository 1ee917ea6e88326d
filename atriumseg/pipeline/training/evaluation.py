"""Evaluating a model as users meet it: segment each image, compare with its label, write one CSV row per case."""

from __future__ import annotations

import csv
import logging
from dataclasses import fields
from pathlib import Path

from tqdm.auto import tqdm

from atriumseg.pipeline.analysis.metrics import CaseMetrics, case_metrics
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import IMAGE_SUFFIXES, case_name, read_image
from atriumseg.pipeline.io.writing import write_atomically

log = logging.getLogger(__name__)


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
        rows.append((name, case_metrics(mask, label.tensor[0].numpy() > 0.5, image.tensor.affine.numpy())))
        log.info("%s: Dice %.4f, HD95 %.2f mm, ASD %.2f mm", name, rows[-1][1].dice, rows[-1][1].hd95_mm, rows[-1][1].asd_mm)
    return rows
