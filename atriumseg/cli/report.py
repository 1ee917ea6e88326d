"""``atriumseg report``: rebuild the merged report (and QC sheet) of an output folder from its records."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli.app import EXIT_CASE_FAILED, EXIT_OK, UsageError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("report", help="rebuild report.csv/json (and the QC sheet) from an output folder")
    p.add_argument("output", type=Path, help="output folder of one or more segment runs or shards")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.batch.report import FAILED, RECORDS, rebuild_report, summary_table
    from atriumseg.pipeline.io.writing import not_a_folder

    problem = not_a_folder(args.output)
    if problem:
        raise UsageError(f"{args.output}: {problem}; give the output folder of a segment run")
    if not (args.output / RECORDS).is_dir():  # never write report.csv over a file of someone else's
        raise UsageError(f"{args.output}: no atriumseg records ({RECORDS}); give the output folder of a segment run")
    results = rebuild_report(args.output)
    print(summary_table(results))
    print(f"report: {args.output / 'report.csv'}")
    return EXIT_CASE_FAILED if any(r.status == FAILED for r in results) else EXIT_OK
