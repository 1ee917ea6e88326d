"""``tools/ship_model.py``: a single model or an ensemble becomes the built-in model with its validation
re-measured and the licence on the card, and a built-in model of the other kind leaves nothing behind."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from helpers import load_tool

from atriumseg.models.checkpoint import WEIGHTS_NAME, load_card, load_model, save_model
from atriumseg.models.ensemble import assemble_ensemble, is_ensemble, load_ensemble_card
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.validation import TTA_MARKER


@pytest.fixture(scope="module")
def ship_model() -> ModuleType:
    return load_tool("ship_model")


def options(**overrides: object) -> argparse.Namespace:
    return argparse.Namespace(**{"holdout": "case_103", "cross_validation": [], "folds": 0,
                                 "cv_command": "", **overrides})


def test_an_ensemble_ships_with_its_members_and_replaces_a_single_model(
    ship_model: ModuleType, tiny_model: Path, tmp_path: Path
) -> None:
    target = tmp_path / "default"
    ship_model.install_model(tiny_model, target, options())
    fused = assemble_ensemble(tmp_path / "fused", {"first": tiny_model, "second": tiny_model},
                              provenance={"note": "kept"})
    provenance = ship_model.install_ensemble(fused, target, options())
    ship_model.remove_leftovers(target)
    assert is_ensemble(target) and not (target / WEIGHTS_NAME).exists()
    card = load_ensemble_card(target)
    assert card.members == ("first", "second") and card.provenance["note"] == "kept"
    assert "CC-BY-SA 4.0" in card.provenance["licence"] and card.provenance == provenance
    validated = load_card(tiny_model).provenance["split"]
    (name,) = validated
    assert set(card.provenance["validation"][name]) == set(validated[name]["validation"])
    assert 0.0 < card.provenance["validation_dice"][name] <= 1.0
    Segmenter.from_path(target, device="cpu")


def test_a_single_model_replaces_an_ensemble_and_its_member_folders(
    ship_model: ModuleType, tiny_model: Path, tmp_path: Path
) -> None:
    target = assemble_ensemble(tmp_path / "default", {"first": tiny_model, "second": tiny_model})
    ship_model.install_model(tiny_model, target, options())
    ship_model.remove_leftovers(target)
    assert sorted(p.name for p in target.iterdir()) == ["card.json", WEIGHTS_NAME]
    assert "members" not in json.loads((target / "card.json").read_text())
    assert load_card(target).provenance["holdout_sample"] == "case_103"


def test_reshipping_an_installed_ensemble_in_place_keeps_its_members(
    ship_model: ModuleType, tiny_model: Path, tmp_path: Path
) -> None:
    target = assemble_ensemble(tmp_path / "default", {"first": tiny_model, "second": tiny_model})
    weights = (target / "first" / WEIGHTS_NAME).read_bytes()
    ship_model.install_ensemble(target, target, options(holdout="again"))
    assert (target / "first" / WEIGHTS_NAME).read_bytes() == weights
    assert load_ensemble_card(target).provenance["holdout_sample"] == "again"


def test_a_model_trained_on_every_case_needs_cross_validated_figures(
    ship_model: ModuleType, tiny_model: Path, tmp_path: Path
) -> None:
    network, card = load_model(tiny_model)
    split = {name: {**part, "train": part["train"] + [c for c in part["validation"] if c != "case_103"],
                    "validation": [], "excluded": ["case_103"]}  # every case but the held-out sample
             for name, part in card.provenance["split"].items()}
    everything = save_model(network, replace(card, provenance={**card.provenance, "split": split}), tmp_path / "all")
    with pytest.raises(SystemExit, match="held out no validation cases.*--cross-validation"):
        ship_model.install_model(everything, tmp_path / "default", options())
    assert not (tmp_path / "default").exists()


def test_cross_validated_figures_of_tta_are_refused(ship_model: ModuleType, tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "Synthetic.csv").write_text("case,dice\n")
    (tmp_path / "cv" / TTA_MARKER).write_text("scored with --tta\n")
    figures = options(cross_validation=[f"Synthetic={tmp_path / 'cv' / 'Synthetic.csv'}"], folds=2)
    with pytest.raises(SystemExit, match=r"Synthetic\.csv holds figures of `segment --tta`"):
        ship_model.install_model(tiny_model, tmp_path / "default", figures)
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize(("change", "says"), [({"holdout": "case_100"}, "the model trained on case_100"),
                                              ({"cross_validation": ["A=cv/A.partial.csv"]}, "progress of a")])
def test_a_trained_on_holdout_or_progress_figures_are_refused(ship_model: ModuleType, tiny_model: Path,
                                                              tmp_path: Path, change: dict, says: str) -> None:
    with pytest.raises(SystemExit, match=says):
        ship_model.install_model(tiny_model, tmp_path / "default", options(**change))
    assert not (tmp_path / "default").exists()
