"""``atriumseg average``: one model whose weights are the mean of several models of one design (a model soup)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from atriumseg.cli.app import EXIT_OK, UsageError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "average", help="make one model whose weights are the mean of several models' (a model soup)",
        description="Average the weights of two or more model folders of one design (architecture, plane, "
        "spacing, neighbour slices, intensity scaling, mask threshold), typically runs continued from one model "
        "with other options (--patch, --weights). The result is an ordinary model folder, as fast as one of them; "
        "its card keeps the data of all, a split whose held-out cases none trained on, and a lineage with each "
        "model's own stages. For ensembles, average the same member of each, then `atriumseg assemble`.",
    )
    p.add_argument("models", type=Path, nargs="+", metavar="MODEL",
                   help="model folders (e.g. runs/a/last runs/b/last); the first's card gives the design")
    p.add_argument("-o", "--output", type=Path, required=True, help="model folder to write (new or empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model in a folder that holds one (never a run's last/ or best/, an ensemble or "
                   "its member, nor the folder of a MODEL)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.models.card import CardError
    from atriumseg.models.checkpoint import CheckpointError
    from atriumseg.models.lineage import lineage_of
    from atriumseg.pipeline.io.writing import OutputFolderError
    from atriumseg.pipeline.training.average import average_models

    try:
        card = average_models(args.models, args.output, command=shlex.join(["atriumseg", *args.argv]),
                              overwrite=args.overwrite)
    except (CardError, CheckpointError, OutputFolderError) as err:
        raise UsageError(str(err)) from err
    arch, pre = card.architecture, card.preprocessing
    print(f"model {args.output}: the mean of {len(args.models)} models' weights ({pre.plane} network, width "
          f"{arch.width}, depth {arch.depth}; lineage of {len(lineage_of(card))} stage(s): atriumseg info "
          f"{args.output})")
    return EXIT_OK
