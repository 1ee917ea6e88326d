"""Cross-validated figures of one design: its K fold models scored on the cases each did not train on.

Train the folds first (one run per fold, same design, data and seed; each may go in the background):

    for K in 0 1 2 3 4; do
        atriumseg train ../shared/data/Task02_Heart_cropped ../shared/data/LA2018_LGE -o runs/cv-axial/fold$K \\
            --folds 5 --fold $K --exclude la_023 --max-minutes 100 --quiet
    done
    python tools/cross_validate.py runs/cv-axial/fold*/last -o cv/axial

Every stage of a fold model must have trained on its fold's training cases only: continue fold K with
``--init runs/cv-axial/foldK/last``, never ``--init default`` (the built-in model has seen every fold).
An ensemble design passes one ensemble folder per fold, each holding only that fold's members
(``assemble_ensemble``; a member of another fold is refused).
Each fold model's ``last/`` segments its own validation cases through the Segmenter users run (no epoch
is picked on the cases it is scored on); ``OUTPUT/DATASET.csv`` holds every case of each dataset once
(``atriumseg evaluate``'s columns), and the per-protocol summaries are printed with the
``tools/ship_model.py --cross-validation`` arguments that put them on a shipped model's card.
``--partial`` scores the folds trained so far (each once) while the others train: progress, written as
``OUTPUT/DATASET.partial.csv`` and labelled as such, never a card's figures. ``--tta`` scores the folds as
``atriumseg segment --tta`` runs them (does test-time augmentation pay?) and marks OUTPUT so
(``scored_with_tta.txt``): ``tools/ship_model.py`` refuses those CSVs, and a folder of one kind is never
overwritten with the other.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from atriumseg.pipeline.analysis.metrics import summarise
from atriumseg.pipeline.evaluation.table import summary_line, write_metrics_csv
from atriumseg.pipeline.training.validation import mark_scored_with_tta, out_of_fold, scored_with_tta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="the K fold models (e.g. runs/cv-axial/fold*/last)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for one CSV per dataset")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--partial", action="store_true", help="some of the K folds: progress, not CV figures")
    parser.add_argument("--tta", action="store_true",
                        help="segment with test-time augmentation (segment --tta): that option's figures, not shipped")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if any(args.output.glob("*.csv")) and scored_with_tta(args.output) != args.tta:
        sys.exit(f"cross_validate: {args.output} holds figures {'without' if args.tta else 'with'} --tta; "
                 "write these to another folder")
    try:
        result = out_of_fold(args.models, device=args.device, partial=args.partial, tta=args.tta)
    except ValueError as err:
        sys.exit(f"cross_validate: {err}")
    args.output.mkdir(parents=True, exist_ok=True)
    if args.tta:  # before any CSV, so none is ever unmarked
        mark_scored_with_tta(args.output)
    pairs = []
    for name, scored in result.rows.items():
        path = write_metrics_csv(sorted(scored), args.output / f"{name}{'' if result.whole else '.partial'}.csv")
        pairs.append(f"{name}={path}")
        print(f"{name}: {summary_line(summarise(scored))}")
    if not result.whole:
        print(f"partial: folds {result.folds} of {result.k}; not cross-validated figures until every fold is in")
        return
    if args.tta:
        print("with --tta: the figures of `segment --tta`, not of the model as it runs by default; not for a card")
        return
    command = shlex.join(["python", "tools/cross_validate.py", *map(str, args.models), "-o", str(args.output)])
    print("ship with: python tools/ship_model.py MODEL --folds", len(args.models), "--cross-validation",
          *pairs, "--cv-command", shlex.quote(command))


if __name__ == "__main__":
    main()
