"""``atriumseg status STORAGE``: the service's queue and every series' state, read from its storage folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from atriumseg.cli.app import EXIT_OK, UsageError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("status", help="what 'atriumseg serve' holds: queue, series states, outbox",
                            description="Read the storage folder of 'atriumseg serve' (running or not): whether "
                            "the service runs, the series in hand and queued, the watch folder's entries still "
                            "settling, each series' state and where its SEG was delivered, the outbox and the "
                            "refused objects.")
    p.add_argument("storage", type=Path, help="the --storage folder of 'atriumseg serve'")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.serve.status import format_status, read_status

    try:
        report = read_status(args.storage)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    print(json.dumps(report, indent=1) if args.json else format_status(report))
    return EXIT_OK
