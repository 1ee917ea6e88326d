"""Tests that need a learned model: the tiny U-Net trained once per session on synthetic volumes."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from helpers import dice

from atriumseg.api import segment
from atriumseg.models.checkpoint import load_model
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case


def test_training_lowers_the_loss_and_writes_a_loadable_model(tiny_model: Path) -> None:
    rows = list(csv.DictReader((tiny_model.parent / "metrics.csv").open()))
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.5 * first, f"loss went from {first} to {last}"
    network, card = load_model(tiny_model)
    assert card.provenance["split"]["Synthetic"]["validation"] == ["case_103"]
    assert card.provenance["validation"]["Synthetic"]["case_103"]["dice"] > 0.8
    assert card.provenance["validation_dice"]["overall"] == card.provenance["validation_dice"]["Synthetic"]
    assert card.architecture.width == 16 and isinstance(network, torch.nn.Module)


def test_the_trained_model_generalises_to_an_unseen_volume_and_grid(tiny_model: Path) -> None:
    """A learned-model test: the tiny model, trained on three volumes, segments an unseen seed on a new grid."""
    case = synthetic_case((50, 52, 44), make_affine((50, 52, 44), (1.5, 1.5, 1.5), "RAS", (5, 5, -5)), seed=333)
    mask = segment(nib.Nifti1Image(case.image, case.affine), Segmenter.from_path(tiny_model, device="cpu"))
    score = dice(np.asanyarray(mask.dataobj), case.label)
    assert score > 0.8, f"Dice {score:.3f} <= 0.8 on an unseen synthetic volume"
