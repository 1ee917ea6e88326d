"""``atriumseg info``: describe a model or an ensemble (design, datasets, validation figures, lineage);
``--json`` prints its card (an ensemble's card with each member's)."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli.app import EXIT_OK, UsageError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="describe a model: design, training data, validation figures")
    p.add_argument(
        "model", type=Path, nargs="?", default=None, help="model or ensemble folder (default: the built-in model)"
    )
    p.add_argument("--json", action="store_true", help="print the whole card as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from atriumseg.models.checkpoint import CheckpointError, load_card, resolve_model_path
    from atriumseg.models.describe import describe, describe_ensemble
    from atriumseg.models.ensemble import is_ensemble, load_ensemble_card

    try:
        folder = resolve_model_path(args.model)
        if not is_ensemble(folder):
            card = load_card(folder)
            print(json.dumps(card.to_dict(), indent=2) if args.json else describe(card))
            return EXIT_OK
        ensemble = load_ensemble_card(folder)
        members = {name: load_card(folder / name) for name in ensemble.members}
    except CheckpointError as err:
        raise UsageError(str(err)) from err
    if args.json:
        cards = {name: card.to_dict() for name, card in members.items()}
        print(json.dumps({**ensemble.to_dict(), "member_cards": cards}, indent=2))
    else:
        print(describe_ensemble(ensemble, members))
    return EXIT_OK
