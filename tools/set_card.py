"""Set inference-time preprocessing fields (``centre_clip``, the cap at the centre's percentile; ``min_slice_size``,
the zero padding of small slices) on a trained model's card (each member's, for an ensemble), the weights
untouched; the card's provenance records each change as set after training, so nobody takes it for a training
choice. Cross-validate the result (``tools/cross_validate.py`` on fold models changed alike) before shipping it.

    cp -r runs/cv_longer2_fold0 runs/cv_centre_fold0
    python tools/set_card.py runs/cv_centre_fold0 --centre-clip 0.5
    python tools/set_card.py runs/axial/last --min-slice-size 160   # a run trained before the card had the field
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

SETTABLE = ("centre_clip", "min_slice_size")  # preprocessing that only inference reads: safe to set after training


def set_preprocessing(folder: Path, **fields: float | int) -> ModelCard:
    """Give the single model in ``folder`` the preprocessing ``fields`` (names from :data:`SETTABLE`), one note in
    its provenance per field that changes (a field that already has its value is left as it is)."""
    unknown = sorted(set(fields) - set(SETTABLE))
    if unknown:
        raise ValueError(f"set_card: {', '.join(unknown)} cannot be set after training (only {', '.join(SETTABLE)})")
    folder = model_folder(folder)
    card = load_card(folder)
    changed = {name: value for name, value in fields.items() if getattr(card.preprocessing, name) != value}
    if not changed:
        return card
    pre = dataclasses.replace(card.preprocessing, **changed)  # validates the values
    notes = [{"field": f"preprocessing.{name}", "from": getattr(card.preprocessing, name), "to": value,
              "package_version": __version__} for name, value in changed.items()]
    provenance = {**card.provenance, "set_after_training": [*card.provenance.get("set_after_training", []), *notes]}
    updated = dataclasses.replace(card, preprocessing=pre, provenance=provenance)
    write_atomically(folder / CARD_NAME, updated.save)
    return updated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model folder or an ensemble folder (every member is changed)")
    parser.add_argument("--centre-clip", type=float, default=None,
                        help="cap intensities at the upper percentile of this middle fraction of each axis (0: off)")
    parser.add_argument("--min-slice-size", type=int, default=None,
                        help="zero-pad slices smaller than this many pixels, as training padded its crops (0: off)")
    args = parser.parse_args()
    fields = {name: getattr(args, name) for name in SETTABLE if getattr(args, name) is not None}
    if not fields:
        parser.error("give --centre-clip, --min-slice-size or both")
    if is_ensemble(args.model) and args.min_slice_size is not None:
        parser.error("--min-slice-size is set on one member's folder at a time (members may pad differently)")
    folders = ([args.model / name for name in load_ensemble_card(args.model).members] if is_ensemble(args.model)
               else [args.model])
    for folder in folders:
        set_preprocessing(folder, **fields)
        print(f"{folder}: " + ", ".join(f"preprocessing.{name} = {value:g}" for name, value in fields.items()))


if __name__ == "__main__":
    main()
