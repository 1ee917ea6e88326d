"""``atriumseg evaluate``: Dice, HD95, ASD (mm) and volumes (mL) of a model against reference labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import EXIT_OK, UsageError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate", parents=[options.model_options(), options.orientation_option(), options.quiet_option()],
        help="Dice, HD95 and surface distance (mm) and volumes (mL) against reference labels",
        description="Segment each image in IMAGES and compare it with the label of the same name in LABELS, "
        "on the image's own grid and in world units. Writes a CSV and prints a summary.",
    )
    p.add_argument("images", type=Path, help="folder of images")
    p.add_argument("labels", type=Path, help="folder of reference labels with the same names")
    p.add_argument("--cases", nargs="*", default=None, metavar="NAME", help="evaluate only these case names")
    p.add_argument("--output", "-o", type=Path, default=Path("evaluation.csv"), help="CSV path (evaluation.csv)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.analysis.metrics import summarise
    from atriumseg.pipeline.training.evaluation import evaluate, pair_cases, write_metrics_csv

    try:
        pairs = pair_cases(args.images, args.labels, args.cases)
    except (ValueError, OSError) as err:
        raise UsageError(str(err)) from err
    segmenter = options.load_segmenter(args)
    rows = evaluate(segmenter, pairs, args.assume_orientation, show_progress=not args.quiet)
    write_metrics_csv(rows, args.output)
    s = summarise(rows)
    print(f"{'case':<16}{'Dice':>8}{'HD95 mm':>10}{'ASD mm':>9}{'pred mL':>10}{'true mL':>10}")
    for name, m in rows:
        print(f"{name:<16}{m.dice:>8.4f}{m.hd95_mm:>10.2f}{m.asd_mm:>9.2f}{m.predicted_ml:>10.1f}{m.true_ml:>10.1f}")
    print(
        f"{s.cases} cases: Dice mean {s.dice_mean:.4f}, median {s.dice_median:.4f}, worst {s.dice_worst:.4f} "
        f"({s.worst_case}); HD95 mean {s.hd95_mean_mm:.2f} mm; ASD mean {s.asd_mean_mm:.2f} mm; CSV: {args.output}"
    )
    return EXIT_OK
