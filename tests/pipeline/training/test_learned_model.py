"""Tests that need a learned model: the tiny U-Net trained once per session on synthetic volumes.

The tiny model validates at Dice 0.99 and reaches 0.99 on an unseen volume with one torch thread (each
test process's share under ``make test``), 0.84 with two (another reduction order, another run); an
untrained network scores near 0, so a bound of 0.65 says it learned the atrium, whatever the thread count.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import dice

from atriumseg.api import segment
from atriumseg.models.checkpoint import load_model
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.dataset import load_msd_dataset
from atriumseg.pipeline.training.validation import validate
from atriumseg.synthetic import make_affine, synthetic_case

pytestmark = pytest.mark.slow  # the tiny model is trained for these tests
MIN_DICE = 0.65


def test_training_lowers_the_loss_and_best_keeps_the_best_validated_epoch(tiny_model: Path) -> None:
    rows = list(csv.DictReader((tiny_model.parent / "metrics.csv").open()))
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.5 * first, f"loss went from {first} to {last}"
    validated = [float(r["val_dice_mean"]) for r in rows if r["val_dice_mean"]]
    _, card = load_model(tiny_model)
    assert card.provenance["split"]["Synthetic"]["validation"] == ["case_103"]
    assert card.provenance["validation_dice"]["overall"] == pytest.approx(max(validated), abs=1e-4)
    assert card.provenance["validation_dice"]["overall"] == card.provenance["validation_dice"]["Synthetic"]
    score = card.provenance["validation"]["Synthetic"]["case_103"]["dice"]
    assert score > MIN_DICE, f"validation Dice {score:.3f} <= {MIN_DICE}"


def test_the_cards_validation_figures_are_what_the_saved_model_scores(tiny_model: Path) -> None:
    """``best/`` is reloaded and validated again: the card's figures are those of the weights beside it."""
    network, card = load_model(tiny_model)
    dataset = load_msd_dataset(Path(card.provenance["data"][0]["root"]))
    again = validate(Segmenter(network, card, device="cpu"), dataset.select(["case_103"]), dataset.orientation)
    recorded = card.provenance["validation"]["Synthetic"]["case_103"]
    assert again["case_103"]["dice"] == pytest.approx(recorded["dice"], abs=1e-3)
    assert again["case_103"]["hd95_mm"] == pytest.approx(recorded["hd95_mm"], abs=0.5)


def test_the_trained_model_generalises_to_an_unseen_volume_and_grid(tiny_model: Path) -> None:
    """A learned-model test: the tiny model, trained on three volumes, segments an unseen seed on a new grid."""
    case = synthetic_case((50, 52, 44), make_affine((50, 52, 44), (1.5, 1.5, 1.5), "RAS", (5, 5, -5)), seed=333)
    mask = segment(nib.Nifti1Image(case.image, case.affine), Segmenter.from_path(tiny_model, device="cpu"))
    score = dice(np.asanyarray(mask.dataobj), case.label)
    assert score > MIN_DICE, f"Dice {score:.3f} <= {MIN_DICE} on an unseen synthetic volume"
