"""``atriumseg evaluate``: Dice, HD95, ASD (mm), volumes (mL) and volume error (%) of a model against labels."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import EXIT_CASE_FAILED, EXIT_OK, UsageError

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate", parents=[options.model_options(), options.orientation_option(), options.quiet_option()],
        help="Dice, HD95 and surface distance (mm), volumes (mL) and volume error (%%) against reference labels",
        description="Segment each image in IMAGES and compare it with the label of the same name in LABELS, "
        "on the image's own grid and in world units; the volume error is in % of the label's volume. "
        "Writes a CSV and prints a table with the means. A case that fails (unreadable, label on another grid) "
        "is reported with its reason and left out; the others are scored, and the exit code is then 1.",
    )
    p.add_argument("images", type=Path, help="folder of images")
    p.add_argument("labels", type=Path, help="folder of reference labels with the same names")
    p.add_argument("--cases", nargs="*", default=None, metavar="NAME", help="evaluate only these case names")
    p.add_argument("--output", "-o", type=Path, default=Path("evaluation.csv"), help="CSV path (evaluation.csv)")
    p.add_argument(
        "--tta", action="store_true",
        help="segment as `segment --tta` does (5 test-time augmentations averaged: 5 network passes per slice, "
        "about 3-4x the time): does it pay on your data?",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV (default: refuse)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.evaluation.evaluate import evaluate
    from atriumseg.pipeline.evaluation.pairs import pair_cases
    from atriumseg.pipeline.evaluation.table import format_table, write_metrics_csv

    options.check_output_file(args.output, args.overwrite)  # before any case is scored
    try:
        pairs = pair_cases(args.images, args.labels, args.cases)
    except (ValueError, OSError) as err:
        raise UsageError(str(err)) from err
    segmenter = options.load_segmenter(args)
    failed: list[str] = []

    def report(name: str, err: Exception) -> None:
        log.error("%s: %s", name, err, exc_info=args.verbose)
        failed.append(name)

    rows = evaluate(segmenter, pairs, args.assume_orientation, show_progress=not args.quiet, tta=args.tta,
                    on_error=report)
    if rows:
        write_metrics_csv(rows, args.output, overwrite=args.overwrite)
        print(format_table(rows))
        print(f"CSV: {args.output}")
    if failed:
        log.error("%d of %d cases failed, left out of the figures: %s", len(failed), len(pairs), ", ".join(failed))
        return EXIT_CASE_FAILED
    return EXIT_OK
