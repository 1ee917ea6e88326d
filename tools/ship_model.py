"""Install a trained model folder as the built-in default model, adding its licence and data note to the card.

    python tools/ship_model.py /work/runs/default/best
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from atriumseg.models.checkpoint import CARD_NAME, WEIGHTS_NAME, default_model_path, load_model

LICENCE = (
    "Trained on the Medical Segmentation Decathlon Task02_Heart (King's College London), CC-BY-SA 4.0; "
    "these weights are shared under CC-BY-SA 4.0. Research use only, not a medical device."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a trained model folder (e.g. RUN/best)")
    parser.add_argument("--holdout", default="la_023", help="the case kept out of training and selection")
    args = parser.parse_args()
    _, card = load_model(args.model)
    target = default_model_path()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.model / WEIGHTS_NAME, target / WEIGHTS_NAME)
    provenance = {**card.provenance, "licence": LICENCE, "holdout_sample": args.holdout}
    dataclasses.replace(card, provenance=provenance).save(target / CARD_NAME)
    load_model(target)
    print(f"installed {args.model} as {target}")


if __name__ == "__main__":
    main()
