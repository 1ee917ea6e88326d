"""The Dice a perfect network would score through a model's grid: each reference label taken to the model's frame
and back as inference carries probabilities, so what resampling alone costs is known before blaming the network.

    python tools/resampling_ceiling.py ../shared/data/LA2018_LGE/labelsTr --cases 8

Each label goes to the model's orientation and voxel size (MONAI ``Orientation`` and bilinear ``Spacing``, as a
probability map on that grid would be if the network were perfect), then back onto its own grid through
``atriumseg.pipeline.inference.restore.restore`` and the card's threshold, and is scored against itself. An
ensemble's members share one frame (the tool refuses one whose members do not), so any member's card serves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from monai.transforms import Orientation, Spacing

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card
from atriumseg.pipeline.analysis.metrics import mask_dice
from atriumseg.pipeline.inference.restore import restore
from atriumseg.pipeline.io.volumes import read_image


def frame_card(model: Path) -> tuple[ModelCard, float]:
    """The card whose orientation and voxel size a model's members share, and the model's threshold."""
    if not is_ensemble(model):
        card = load_card(model)
        return card, card.postprocessing.threshold
    ensemble = load_ensemble_card(model)
    cards = [load_card(model / name) for name in ensemble.members]
    frames = {(c.preprocessing.orientation, c.preprocessing.spacing, c.preprocessing.slice_spacing) for c in cards}
    if len(frames) > 1:
        raise ValueError(f"{model}: members in different frames {sorted(frames)}; give one member instead")
    return cards[0], ensemble.postprocessing.threshold


def ceiling_dice(label: Path, card: ModelCard, threshold: float) -> float:
    """Dice of ``label`` against itself after the round trip through ``card``'s grid."""
    truth = (read_image(label).tensor > 0).float()
    pre = card.preprocessing
    oriented = Orientation(axcodes=pre.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))(truth)
    framed = Spacing(pixdim=pre.pixdim, mode="bilinear", padding_mode="border")(oriented)
    back = restore(framed.as_tensor(), framed.affine, truth) > threshold
    reference = truth.as_tensor() > 0
    return mask_dice(back.numpy(), reference.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path, nargs="+", help="folders of reference labels (NIfTI, NRRD, MHA)")
    parser.add_argument("--model", type=Path, default=None, help="model or ensemble (default: the built-in model)")
    parser.add_argument("--cases", type=int, default=0, help="the first N labels of each folder (default: all)")
    args = parser.parse_args()
    try:
        card, threshold = frame_card(args.model or default_model_path())
    except ValueError as err:
        sys.exit(f"resampling_ceiling: {err}")
    pre = card.preprocessing
    print(f"frame: {pre.orientation}, voxels {pre.pixdim} mm, threshold {threshold:g}")
    for folder in args.labels:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")))
        scores = [ceiling_dice(path, card, threshold) for path in paths[: args.cases or None]]
        if scores:
            print(f"{folder}: {len(scores)} labels, ceiling Dice mean {np.mean(scores):.4f}, worst {min(scores):.4f}")


if __name__ == "__main__":
    main()
