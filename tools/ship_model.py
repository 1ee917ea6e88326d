"""Install a trained model folder as the built-in default model: licence and attribution on the card,
validation re-measured through the shipped card (so ``atriumseg evaluate`` reproduces the card).

    python tools/ship_model.py RUN/last --min-slice-size 160
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from pathlib import Path

from atriumseg.models.checkpoint import CARD_NAME, WEIGHTS_NAME, default_model_path, load_model
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.dataset import load_msd_dataset
from atriumseg.pipeline.training.trainer import validate, validation_summary

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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    network, card = load_model(args.model)
    if args.min_slice_size is not None:
        card = dataclasses.replace(
            card, preprocessing=dataclasses.replace(card.preprocessing, min_slice_size=args.min_slice_size)
        )
    segmenter = Segmenter(network, card, device="cpu")
    per_dataset = {}
    for item in card.provenance["data"]:
        dataset = load_msd_dataset(Path(item["root"]), item["header_orientation_fix"])
        cases = dataset.select(card.provenance["split"][dataset.name]["validation"])
        per_dataset[dataset.name] = validate(segmenter, cases, dataset.orientation)
    provenance = {**card.provenance, "validation": per_dataset, "validation_dice": validation_summary(per_dataset),
                  "licence": LICENCE, "holdout_sample": args.holdout}
    target = default_model_path()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.model / WEIGHTS_NAME, target / WEIGHTS_NAME)
    dataclasses.replace(card, provenance=provenance).save(target / CARD_NAME)
    load_model(target)
    print(f"installed {args.model} as {target}: validation Dice {provenance['validation_dice']}")


if __name__ == "__main__":
    main()
