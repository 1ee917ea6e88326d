"""A pilot's paired table: designs scored on the cases of some folds only (``tools/cross_validate.py --partial``),
set beside other designs' cross-validated figures on those same cases:

    python tools/pilot_table.py "width 48=cv/wide_partial" "width 32=cv/w21" "0.9.0=cv/soup" \\
        --without A4R1S23KR0KU2WSYHK2X

The first design's cases (its ``DATASET.partial.csv``, or ``DATASET.csv``) choose the rows every other design is
read on (``DATASET.csv`` or ``DATASET.partial.csv``, which must hold them all). Per dataset and design: Dice mean,
the mean without the ``--without`` cases (a case one design's luck can swing, such as the dark LGE scan), the worst
case, HD95, mean absolute and signed volume error, and on how many cases the design beats the first one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.training.validation import read_metrics_csv

DATASETS = ("LeftAtrium", "LA2018_LGE")


def design(text: str) -> tuple[str, Path]:
    """``NAME=FOLDER``: a design's label and its folder of per-dataset CSVs."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def read_cases(folder: Path, dataset: str) -> dict[str, CaseMetrics] | None:
    """A design's per-case figures of ``dataset`` (its whole CSV, else its partial one); None when it has neither."""
    for path in (folder / f"{dataset}.csv", folder / f"{dataset}.partial.csv"):
        if path.is_file():
            return dict(read_metrics_csv(path))
    return None


def table(designs: list[tuple[str, Path]], without: tuple[str, ...] = ()) -> str:
    """The Markdown table of ``designs`` on the first one's cases, per dataset it has (a :class:`ValueError` names a
    design that lacks one of those cases)."""
    lines = ["| dataset | design | Dice | without " + (", ".join(without) or "-") + " | worst | HD95 | "
             f"\\|vol err\\| (signed) | above {designs[0][0]} |", "| --- " * 8 + "|"]
    for dataset in DATASETS:
        first = read_cases(designs[0][1], dataset)
        if first is None:
            continue
        cases = sorted(first)
        for name, folder in designs:
            rows = read_cases(folder, dataset) or {}
            if missing := [case for case in cases if case not in rows]:
                raise ValueError(f"design {name!r} has no {dataset} figures for {', '.join(missing[:3])}")
            metrics = [rows[case] for case in cases]
            dice = np.array([m.dice for m in metrics])
            kept = np.array([case not in without for case in cases])
            worst = int(np.argmin(dice))
            above = "" if name == designs[0][0] else \
                f"{int((dice > [first[case].dice for case in cases]).sum())} of {len(cases)}"
            lines.append(
                f"| {dataset} ({len(cases)}) | {name} | {dice.mean():.4f} | {dice[kept].mean():.4f} | "
                f"{dice[worst]:.3f} ({cases[worst]}) | {np.mean([m.hd95_mm for m in metrics]):.2f} mm | "
                f"{np.mean([m.abs_volume_error_pct for m in metrics]):.1f}% "
                f"({np.mean([m.volume_error_pct for m in metrics]):+.1f}%) | {above} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("designs", type=design, nargs="+", metavar="NAME=FOLDER",
                        help="the pilot's folder first, then the designs to set beside it")
    parser.add_argument("--without", nargs="*", default=[], metavar="CASE", help="cases the second mean leaves out")
    args = parser.parse_args()
    try:
        print(table(args.designs, tuple(args.without)))
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
