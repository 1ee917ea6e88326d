"""``atriumseg info``: describe a model (design, datasets, validation figures); ``--json`` prints its card."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli.app import EXIT_OK, UsageError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="describe a model: design, training data, validation figures")
    p.add_argument("model", type=Path, nargs="?", default=None, help="model folder (default: the built-in model)")
    p.add_argument("--json", action="store_true", help="print the whole card as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from atriumseg.models.checkpoint import CheckpointError, load_card, resolve_model_path
    from atriumseg.models.describe import describe

    try:
        card = load_card(resolve_model_path(args.model))
    except CheckpointError as err:
        raise UsageError(str(err)) from err
    print(json.dumps(card.to_dict(), indent=2) if args.json else describe(card))
    return EXIT_OK
