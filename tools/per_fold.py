"""Per-fold figures of a cross-validation: its out-of-fold CSVs grouped by each fold model's validation cases.

    python tools/per_fold.py cv/longer candidates/cv/longer_axial/fold0 candidates/cv/longer_axial/fold1 \\
        candidates/cv/longer_axial/fold2 candidates/cv/longer_axial/fold3 candidates/cv/longer_axial/fold4

``CSV_FOLDER`` is ``tools/cross_validate.py``'s output (one ``DATASET.csv`` per dataset); the fold models (or
fold ensembles) are the ones it scored, or one member of each fold ensemble: their cards say which cases each
validated on. Nothing is segmented again: it prints one Markdown row per fold and dataset (Dice mean, worst
case, mean absolute volume error), the figures the README quotes per fold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atriumseg.pipeline.analysis.metrics import CaseMetrics, summarise
from atriumseg.pipeline.training.validation import cross_validated_datasets, fold_cards, read_metrics_csv


def per_fold(csv_folder: Path, fold_models: list[Path]) -> list[tuple[int, str, list[tuple[str, CaseMetrics]]]]:
    """Each fold's out-of-fold rows per dataset, by fold number. Some of the folds may be given, each once, of one
    split (:func:`~atriumseg.pipeline.training.validation.fold_cards`'s :class:`ValueError` otherwise); a
    :class:`ValueError` also names a validation case the CSVs lack: another design's CSVs or fold models."""
    rows = {name: dict(read_metrics_csv(csv_folder / f"{name}.csv")) for name in cross_validated_datasets(csv_folder)}
    grouped = []
    cards, _, _ = fold_cards(fold_models, partial=True)
    for folder, card in cards:
        fold = card.provenance["config"]["fold"]
        for dataset, part in card.provenance.get("split", {}).items():
            cases = part.get("validation", [])
            if not cases:
                continue
            if dataset not in rows:
                raise ValueError(f"{folder}: fold {fold} validates on {dataset}, which {csv_folder} has no CSV of")
            missing = sorted(set(cases) - rows[dataset].keys())
            if missing:
                raise ValueError(f"{folder}: fold {fold} validates on {missing[:3]} ({len(missing)} in all), not in "
                                 f"{csv_folder}/{dataset}.csv")
            grouped.append((fold, dataset, [(case, rows[dataset][case]) for case in cases]))
    return sorted(grouped, key=lambda item: (item[0], item[1]))


def table(grouped: list[tuple[int, str, list[tuple[str, CaseMetrics]]]]) -> str:
    """The per-fold figures as a Markdown table."""
    lines = ["| fold | dataset (cases) | Dice mean | worst | \\|volume error\\| |", "| --- " * 5 + "|"]
    for fold, dataset, scored in grouped:
        s = summarise(scored)
        lines.append(f"| {fold} | {dataset} ({s.cases}) | {s.dice_mean:.4f} | {s.dice_worst:.3f} ({s.worst_case}) | "
                     f"{s.abs_volume_error_mean_pct:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_folder", type=Path, help="tools/cross_validate.py's output folder (e.g. cv/longer)")
    parser.add_argument("models", type=Path, nargs="+", help="the fold models or ensembles it scored")
    args = parser.parse_args()
    try:
        print(table(per_fold(args.csv_folder, args.models)))
    except ValueError as err:
        sys.exit(f"per_fold: {err}")


if __name__ == "__main__":
    main()
