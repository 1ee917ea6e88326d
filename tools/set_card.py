"""Set the cap at the centre's percentile (``preprocessing.centre_clip``, an inference-time field) on a trained model's
card (each member's, for an ensemble), the weights untouched; the card's provenance records it as set after
training, so nobody takes it for a training choice. Cross-validate the result (``tools/cross_validate.py`` on fold
models changed alike) before shipping it.

    cp -r runs/cv_longer2_fold0 runs/cv_centre_fold0
    python tools/set_card.py runs/cv_centre_fold0 --centre-clip 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from atriumseg._version import __version__
from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import CARD_NAME, load_card, model_folder
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card
from atriumseg.pipeline.io.writing import write_atomically


def set_centre_clip(folder: Path, fraction: float) -> ModelCard:
    """Give the single model in ``folder`` ``preprocessing.centre_clip = fraction``, noted in its provenance (a card
    that already has it is left as it is)."""
    folder = model_folder(folder)
    card = load_card(folder)
    if card.preprocessing.centre_clip == fraction:
        return card
    pre = dataclasses.replace(card.preprocessing, centre_clip=fraction)  # validates the value
    note = {"field": "preprocessing.centre_clip", "from": card.preprocessing.centre_clip, "to": fraction,
            "package_version": __version__}
    provenance = {**card.provenance, "set_after_training": [*card.provenance.get("set_after_training", []), note]}
    changed = dataclasses.replace(card, preprocessing=pre, provenance=provenance)
    write_atomically(folder / CARD_NAME, changed.save)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model folder or an ensemble folder (every member is changed)")
    parser.add_argument("--centre-clip", type=float, required=True,
                        help="cap intensities at the upper percentile of this middle fraction of each axis (0: off)")
    args = parser.parse_args()
    folders = ([args.model / name for name in load_ensemble_card(args.model).members] if is_ensemble(args.model)
               else [args.model])
    for folder in folders:
        set_centre_clip(folder, args.centre_clip)
        print(f"{folder}: preprocessing.centre_clip = {args.centre_clip:g}")


if __name__ == "__main__":
    main()
