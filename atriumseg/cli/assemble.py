"""``atriumseg assemble``: make an ensemble folder of model folders (``NAME=MODEL``, the first locates the atrium)."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli.app import EXIT_OK, UsageError


def member(text: str) -> tuple[str, Path]:
    """``NAME=MODEL``: a member's subfolder name and the model folder it is copied from."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL (e.g. axial=runs/axial/last), got {text!r}")
    return name, Path(path)


def register(commands: argparse._SubParsersAction) -> None:
    from atriumseg.models.card import FUSIONS, Postprocessing

    p = commands.add_parser(
        "assemble", help="make an ensemble of model folders, their probabilities combined on the input grid",
        description="Copy each member's card and weights into OUTPUT/NAME and write an ensemble card that "
        "combines their probabilities on the input grid (--fusion); the first member locates the atrium. Use the "
        "result wherever a model folder goes (segment --model, evaluate, info, export, serve).",
    )
    p.add_argument("members", type=member, nargs="+", metavar="NAME=MODEL",
                   help="a member's name (its subfolder, e.g. the plane) and its model folder, in order")
    p.add_argument("-o", "--output", type=Path, required=True, help="ensemble folder to write (new or empty)")
    p.add_argument("--threshold", type=float, default=Postprocessing.threshold,
                   help="threshold of the combined probability (default %(default)s)")
    p.add_argument("--fusion", choices=FUSIONS, default=Postprocessing.fusion,
                   help="how the members' probabilities are combined: their mean, or the sigmoid of their mean "
                   "logit (a sure member outweighs a hesitant one) (default %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder: its card and the members named here are replaced")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg._version import __version__
    from atriumseg.models.card import CardError, Postprocessing
    from atriumseg.models.checkpoint import CheckpointError
    from atriumseg.models.ensemble import assemble_ensemble, load_ensemble

    members = dict(args.members)
    if len(members) != len(args.members):
        raise UsageError(f"member names must be distinct, got {[name for name, _ in args.members]}")
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"{args.output} exists and is not a folder; give a new or empty folder for the ensemble")
    if args.output.exists() and any(args.output.iterdir()) and not args.overwrite:
        raise UsageError(f"{args.output} is not empty; pass --overwrite to replace the ensemble there")
    try:
        folder = assemble_ensemble(args.output, members, Postprocessing(args.threshold, fusion=args.fusion),
                                   package_version=__version__)
        models, card = load_ensemble(folder)
    except (CardError, CheckpointError) as err:
        raise UsageError(str(err)) from err
    print(f"ensemble {folder} (fusion {card.postprocessing.fusion}, threshold {card.postprocessing.threshold}):")
    for name, (_, member_card) in zip(card.members, models, strict=True):
        print(f"  {name}: {member_card.preprocessing.plane} network from {members[name]}")
    return EXIT_OK
