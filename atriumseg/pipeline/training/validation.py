"""Validation during training (whole held-out volumes segmented exactly as users segment them), and the
cross-validated figures a card carries as its expected accuracy."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import numpy as np

from atriumseg.pipeline.analysis.metrics import CaseMetrics, summarise
from atriumseg.pipeline.evaluation.evaluate import evaluate
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.dataset import LabelledCase


def validate(segmenter: Segmenter, cases: list[LabelledCase], orientation: str | None) -> dict[str, dict[str, float]]:
    """Per-case metrics (Dice, HD95, volumes...) of whole held-out volumes, keyed by case name."""
    rows = evaluate(segmenter, [(c.name, c.image, c.label) for c in cases], orientation, show_progress=False)
    return {name: asdict(metrics) for name, metrics in rows}


def validation_summary(per_dataset: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Mean Dice per dataset and ``overall``, the mean of those means (each dataset counts once)."""
    means = {name: float(np.mean([m["dice"] for m in cases.values()])) for name, cases in per_dataset.items() if cases}
    return {**means, "overall": float(np.mean(list(means.values())))} if means else {}


def cross_validation_record(per_dataset: dict[str, list[tuple[str, CaseMetrics]]], folds: int,
                            command: str) -> dict:
    """The card's ``provenance.cross_validation``: each dataset's out-of-fold per-case metrics summarised
    (:class:`~atriumseg.pipeline.analysis.metrics.Summary` fields), with the fold count and the command
    that made them. Each case must be scored by the fold model that did not train on it."""
    if folds < 2 or not per_dataset:
        raise ValueError(f"cross-validation needs 2 or more folds and a dataset, got {folds} and {list(per_dataset)}")
    return {"folds": folds, "command": command,
            "per_dataset": {name: asdict(summarise(rows)) for name, rows in per_dataset.items()}}


def read_metrics_csv(path: Path) -> list[tuple[str, CaseMetrics]]:
    """Per-case metrics from a CSV that ``atriumseg evaluate`` wrote (a ``case`` column, then the fields)."""
    with open(path, newline="") as fh:
        return [(row.pop("case"), CaseMetrics(**{k: float(v) for k, v in row.items()})) for row in csv.DictReader(fh)]
