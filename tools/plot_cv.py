"""A picture of cross-validated designs: every case's Dice and volume error, per protocol, against issue 18's targets.

    python tools/plot_cv.py "axial=cv/axial" "shipped=cv/axial_continued_coronal" -o docs/cross_validation.png

Each ``NAME=FOLDER`` is a design's ``tools/cross_validate.py`` output (one ``DATASET.csv`` per dataset). One
column per dataset; the top row shows each case's Dice (a dot per case, the mean as a bar), the bottom row its
signed volume error; the targets (Dice 0.92, no case below 0.85, mean absolute volume error 6%) are drawn in.
The last design's cases below 0.85 are named; cases beyond an axis sit on its edge (Dice with its value).
It also prints the designs' paired table (Markdown): per dataset and design, the Dice mean, the mean without
the design's worst case, cases below 0.85, the mean absolute volume error, on how many cases the design's Dice
beats the last design's, and by how much at most (negative: the last design is better on every case; the designs
must hold the same cases).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from atriumseg.pipeline.analysis.metrics import CaseMetrics, summarise  # noqa: E402
from atriumseg.pipeline.training.validation import cross_validated_datasets, read_metrics_csv  # noqa: E402

TARGET_DICE, FLOOR_DICE, TARGET_ABS_VOLUME_PCT = 0.92, 0.85, 6.0
DICE_AXIS_FLOOR, VOLUME_AXIS = 0.7, 40.0  # the axes' ranges; cases beyond them are drawn at the edge
LABEL_GAP = 0.012  # Dice closer than this writes two case labels on one line
LABELS = {"LeftAtrium": "bSSFP (MSD Task02)", "LA2018_LGE": "LGE-MRI (2018 LA challenge)"}


def design(text: str) -> tuple[str, Path]:
    """``NAME=FOLDER``: a design's label and its folder of per-dataset CSVs."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def datasets_of(designs: list[tuple[str, Path]]) -> list[str]:
    """The datasets the first design holds a whole CSV of (``LABELS``' order first); progress files are not."""
    found = set(cross_validated_datasets(designs[0][1]))
    return [name for name in LABELS if name in found] + sorted(found - set(LABELS))


def read_design(name: str, folder: Path, dataset: str) -> list[tuple[str, CaseMetrics]]:
    """One design's per-case rows of ``dataset`` (a :class:`ValueError` names a design that lacks it)."""
    path = folder / f"{dataset}.csv"
    if not path.is_file():
        raise ValueError(f"design {name!r}: no {path}")
    return read_metrics_csv(path)


def table(designs: list[tuple[str, Path]]) -> str:
    """The designs' paired figures as a Markdown table, one row per dataset and design, each compared case by case
    with the last design (a :class:`ValueError` when two designs do not hold the same cases)."""
    lines = [f"| dataset | design | Dice mean | without its worst case | worst | below {FLOOR_DICE} | "
             f"\\|volume error\\| | Dice above {designs[-1][0]}'s | largest margin over it |", "| --- " * 9 + "|"]
    for dataset in datasets_of(designs):
        scored = {name: dict(read_design(name, folder, dataset)) for name, folder in designs}
        reference = scored[designs[-1][0]]
        for name, rows in scored.items():
            if rows.keys() != reference.keys():
                raise ValueError(f"{dataset}: design {name!r} holds other cases than {designs[-1][0]!r}")
            s = summarise(list(rows.items()))
            dice = np.array([m.dice for m in rows.values()])
            margins = [rows[case].dice - reference[case].dice for case in rows]
            above = sum(margin > 0 for margin in margins)
            margin = "" if name == designs[-1][0] else f"{max(margins):+.4f}"
            lines.append(f"| {dataset} ({s.cases}) | {name} | {s.dice_mean:.4f} | {np.sort(dice)[1:].mean():.4f} | "
                         f"{s.dice_worst:.3f} ({s.worst_case}) | {int((dice < FLOOR_DICE).sum())} | "
                         f"{s.abs_volume_error_mean_pct:.1f}% | {above} of {s.cases} | {margin} |")
    return "\n".join(lines)


def lines_below(values: list[float]) -> list[int]:
    """For each labelled Dice, how many higher labels (ties: earlier ones) sit within ``LABEL_GAP`` of it: its label
    goes that many lines lower, so close cases' names stack downwards in the order of their values."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    return [sum(abs(values[i] - values[j]) < LABEL_GAP for j in order[:order.index(i)]) for i in range(len(values))]


def plot(designs: list[tuple[str, Path]], output: Path, seed: int = 0) -> Path:
    """Draw every design's per-case figures, one column per dataset the first design has, and save ``output``."""
    datasets = datasets_of(designs)
    jitter = np.random.default_rng(seed)
    names = [textwrap.fill(name, 14) for name, _ in designs]
    ticks = {"xlim": (-0.5, len(names) + 0.2), "xticks": range(len(names)), "xticklabels": names}
    width = max(5.5, 1.2 * len(designs))  # inches per dataset column, so six designs' labels do not collide
    figure, axes = plt.subplots(2, len(datasets), figsize=(width * len(datasets), 8), squeeze=False)
    for column, dataset in enumerate(datasets):
        top, bottom = axes[0, column], axes[1, column]
        for x, (name, folder) in enumerate(designs):
            rows = read_design(name, folder, dataset)
            summary = summarise(rows)
            dice = np.array([m.dice for _, m in rows])
            error = np.array([m.volume_error_pct for _, m in rows])
            spread = x + jitter.uniform(-0.18, 0.18, len(rows))
            shown = np.maximum(dice, DICE_AXIS_FLOOR)  # cases below the axis sit on its floor, their value written
            top.scatter(spread, shown, s=12, alpha=0.6, marker="o")
            top.hlines(summary.dice_mean, x - 0.3, x + 0.3, colors="black")
            top.annotate(f"{summary.dice_mean:.3f}", (x + 0.3, summary.dice_mean), va="bottom", ha="right", fontsize=8,
                         bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1})
            named = [(case, value, at, y) for (case, _), value, at, y in zip(rows, dice, spread, shown, strict=True)
                     if value < FLOOR_DICE] if x == len(designs) - 1 else []  # the last design's cases named
            for (case, value, at, y), lines in zip(named, lines_below([y for *_, y in named]), strict=True):
                top.annotate(f"{case[:8]} {value:.2f}", (at, y), fontsize=7, xytext=(5, -9 * lines),
                             textcoords="offset points", va="center")
            for value, at in zip(dice, spread, strict=True):
                if value < DICE_AXIS_FLOOR and x < len(designs) - 1:
                    top.annotate(f"{value:.2f}", (at, DICE_AXIS_FLOOR), fontsize=7, xytext=(4, 0),
                                 textcoords="offset points", va="center")
            bottom.scatter(spread, np.clip(error, -VOLUME_AXIS, VOLUME_AXIS), s=12, alpha=0.6)
            bottom.text(x, 0.03, f"mean |err|\n{summary.abs_volume_error_mean_pct:.1f}%", ha="center", fontsize=8,
                        transform=blended_transform_factory(bottom.transData, bottom.transAxes))
        top.axhline(TARGET_DICE, color="green", linestyle="--", linewidth=1, label=f"target mean {TARGET_DICE}")
        top.axhline(FLOOR_DICE, color="red", linestyle=":", linewidth=1, label=f"no case below {FLOOR_DICE}")
        top.set(title=f"{LABELS.get(dataset, dataset)}: {len(rows)} cases", ylabel="Dice, out of fold",
                ylim=(DICE_AXIS_FLOOR - 0.01, 1.0), **ticks)
        top.legend(loc="upper left", ncol=2, fontsize=8)
        bottom.axhspan(-TARGET_ABS_VOLUME_PCT, TARGET_ABS_VOLUME_PCT, color="green", alpha=0.08,
                       label=f"within {TARGET_ABS_VOLUME_PCT:g}% (target: mean |error| <= {TARGET_ABS_VOLUME_PCT:g}%)")
        bottom.axhline(0, color="black", linewidth=0.5)
        bottom.set(ylabel=f"volume error, % of reference (clipped at +-{VOLUME_AXIS:g})",
                   ylim=(-VOLUME_AXIS * 1.6, VOLUME_AXIS * 1.1), **ticks)
        bottom.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)
    plt.close(figure)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("designs", type=design, nargs="+", metavar="NAME=FOLDER",
                        help="a design's label and its tools/cross_validate.py output folder, in order")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    try:
        print(table(args.designs))
        print(plot(args.designs, args.output))
    except ValueError as err:
        sys.exit(f"plot_cv: {err}")


if __name__ == "__main__":
    main()
