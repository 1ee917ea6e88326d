"""Install a trained model folder as the built-in default model: licence and attribution on the card,
validation re-measured through the shipped card (so ``atriumseg evaluate`` reproduces the card).

    python tools/ship_model.py RUN/last --min-slice-size 160
    python tools/ship_model.py atriumseg/models/default --cross-validation ...   # new figures, same weights
    python tools/ship_model.py RUN/last --folds 5 --cross-validation LeftAtrium=cv/bssfp.csv LA2018_LGE=cv/lge.csv \
        --cv-command "atriumseg train ... --folds 5 --fold K; atriumseg evaluate ... (K = 0..4)"

``--cross-validation`` takes, per dataset, an ``atriumseg evaluate`` CSV of out-of-fold cases (each
scored by the fold model that did not train on it); their summary becomes the card's
``provenance.cross_validation``, the model's expected accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from atriumseg.models.checkpoint import default_model_path, load_model, save_model
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.validation import (
    cross_validation_record,
    held_out,
    read_metrics_csv,
    validate,
    validation_summary,
)

LICENCE = (
    "Trained on the Medical Segmentation Decathlon Task02_Heart (King's College London), CC-BY-SA 4.0, and on "
    "the 2018 Atrial Segmentation Challenge LGE-MRI training cases (University of Utah CARMA; research use; cite "
    "Xiong et al., Medical Image Analysis 67 (2021) 101832). These weights are shared under CC-BY-SA 4.0 for "
    "research use only. Not a medical device."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a trained model folder (e.g. RUN/last)")
    parser.add_argument("--holdout", default="la_023", help="the MSD case kept out of training and selection")
    parser.add_argument("--min-slice-size", type=int, default=None,
                        help="set the card's min_slice_size (for runs trained before the card had it)")
    parser.add_argument("--cross-validation", nargs="+", default=[], metavar="DATASET=CSV",
                        help="out-of-fold evaluate CSVs, one per dataset")
    parser.add_argument("--folds", type=int, default=0, help="folds of the cross-validation")
    parser.add_argument("--cv-command", default="", help="how the cross-validated figures were made")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    network, card = load_model(args.model)
    if args.min_slice_size is not None:
        card = dataclasses.replace(
            card, preprocessing=dataclasses.replace(card.preprocessing, min_slice_size=args.min_slice_size)
        )
    segmenter = Segmenter(network, card, device="cpu")
    per_dataset = {dataset.name: validate(segmenter, cases, dataset.orientation) for dataset, cases in held_out(card)}
    provenance = {**card.provenance, "validation": per_dataset, "validation_dice": validation_summary(per_dataset),
                  "licence": LICENCE, "holdout_sample": args.holdout}
    if args.cross_validation:
        pairs = (item.split("=", 1) for item in args.cross_validation)
        rows = {name: read_metrics_csv(Path(csv)) for name, csv in pairs}
        provenance["cross_validation"] = cross_validation_record(rows, args.folds, args.cv_command)
    target = save_model(network, dataclasses.replace(card, provenance=provenance), default_model_path())
    load_model(target)
    print(f"installed {args.model} as {target}: validation Dice {provenance['validation_dice']}")


if __name__ == "__main__":
    main()
