"""Ensemble cards: an ensemble folder loads its members in order, and every bad folder is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import standin_network

from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.models.checkpoint import CheckpointError, save_model
from atriumseg.models.ensemble import EnsembleCard, assemble_ensemble, first_member, is_ensemble, load_ensemble

AXIAL = ModelCard(
    architecture=Architecture(in_channels=3, width=4, depth=3),
    preprocessing=Preprocessing(plane="axial", spacing=(1.5, 1.5), context=1, slice_spacing=1.5, min_slice_size=0),
)
SAGITTAL = ModelCard(
    architecture=Architecture(in_channels=1, width=4, depth=3),
    preprocessing=Preprocessing(plane="sagittal", spacing=(1.4, 1.6), context=0, slice_spacing=0.0, min_slice_size=0),
)


def _ensemble(folder: Path, card: dict | None = None) -> Path:
    save_model(standin_network(AXIAL), AXIAL, folder / "axial")
    save_model(standin_network(SAGITTAL), SAGITTAL, folder / "sagittal")
    data = card or EnsembleCard(("axial", "sagittal"), Postprocessing(threshold=0.4)).to_dict()
    (folder / "card.json").write_text(json.dumps(data))
    return folder


def test_an_ensemble_loads_its_members_in_the_cards_order(tmp_path: Path) -> None:
    folder = _ensemble(tmp_path / "fused")
    models, card = load_ensemble(folder)
    assert is_ensemble(folder) and not is_ensemble(folder / "axial")
    assert card.members == ("axial", "sagittal") and card.postprocessing.threshold == 0.4
    assert [c.preprocessing.plane for _, c in models] == ["axial", "sagittal"]
    assert [n.inc[0].in_channels for n, _ in models] == [3, 1]
    assert not any(n.training for n, _ in models)
    assert first_member(folder) == folder / "axial" and first_member(folder / "sagittal") == folder / "sagittal"


def test_the_card_survives_a_round_trip(tmp_path: Path) -> None:
    card = EnsembleCard(("a", "b", "c"), Postprocessing(0.45, False), "9.9", {"folds": [0, 1, 2]})
    card.save(tmp_path)
    assert EnsembleCard.from_dict(json.loads((tmp_path / "card.json").read_text())) == card


BAD_CARDS = [
    ({"members": [], "format_version": 1}, "members must list 1 to 16"),
    ({"members": "axial", "format_version": 1}, "members must list 1 to 16"),
    ({"members": ["../axial"], "format_version": 1}, "must name a subfolder"),
    ({"members": ["/tmp/axial"], "format_version": 1}, "must name a subfolder"),
    ({"members": ["axial", "axial"], "format_version": 1}, "members must be distinct"),
    ({"members": ["card.json"], "format_version": 1}, "'card.json' would be the ensemble's own card file"),
    ({"members": ["Card.JSON"], "format_version": 1}, "'Card.JSON' would be the ensemble's own card file"),
    ({"members": ["axial"], "format_version": 7}, "format version 7 is not supported"),
    ({"members": ["axial"]}, "malformed ensemble card"),
    ({"members": ["axial"], "format_version": 1, "postprocessing": {"threshold": 2}}, "threshold must be"),
    ({"members": ["axial", "coronal"], "format_version": 1}, "member 'coronal' has no folder"),
]


@pytest.mark.parametrize(("card", "reason"), BAD_CARDS)
def test_a_bad_ensemble_card_is_refused_with_the_reason(tmp_path: Path, card: dict, reason: str) -> None:
    folder = _ensemble(tmp_path / "fused", card)
    with pytest.raises(CheckpointError, match=reason) as err:
        load_ensemble(folder)
    assert str(folder) in str(err.value)


def test_a_member_whose_card_does_not_match_its_weights_is_refused(tmp_path: Path) -> None:
    folder = _ensemble(tmp_path / "fused")
    card = json.loads((folder / "sagittal" / "card.json").read_text())
    card["architecture"]["width"] = 8
    (folder / "sagittal" / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="member 'sagittal': .*weights do not match the card's architecture"):
        load_ensemble(folder)


def test_a_member_that_is_itself_an_ensemble_is_refused(tmp_path: Path) -> None:
    folder = _ensemble(tmp_path / "fused")
    _ensemble(folder / "inner")
    (folder / "card.json").write_text(json.dumps(EnsembleCard(("axial", "inner")).to_dict()))
    with pytest.raises(CheckpointError, match="member 'inner' is itself an ensemble"):
        load_ensemble(folder)


def test_pickled_members_are_never_loaded(tmp_path: Path) -> None:
    folder = _ensemble(tmp_path / "fused")
    (folder / "sagittal" / "model.safetensors").unlink()
    (folder / "sagittal" / "model.pt").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="member 'sagittal': .*missing model.safetensors"):
        load_ensemble(folder)


def test_assemble_copies_members_records_their_sources_and_loads(tmp_path: Path) -> None:
    save_model(standin_network(AXIAL), AXIAL, tmp_path / "runs" / "axial")
    save_model(standin_network(SAGITTAL), SAGITTAL, tmp_path / "runs" / "sagittal")
    members = {"ax": tmp_path / "runs" / "axial", "sag": tmp_path / "runs" / "sagittal"}
    folder = assemble_ensemble(tmp_path / "fused", members, Postprocessing(threshold=0.45), "1.2", {"note": "x"})
    models, card = load_ensemble(folder)
    assert card.members == ("ax", "sag") and card.postprocessing.threshold == 0.45
    assert card.provenance == {"note": "x", "member_sources": {n: str(p) for n, p in members.items()}}
    assert [c.preprocessing.plane for _, c in models] == ["axial", "sagittal"]
    assert (folder / "sag" / "model.safetensors").read_bytes() == (members["sag"] / "model.safetensors").read_bytes()


def test_assemble_refuses_a_member_that_is_not_a_model_before_writing(tmp_path: Path) -> None:
    save_model(standin_network(AXIAL), AXIAL, tmp_path / "axial")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing card.json"):
        assemble_ensemble(tmp_path / "fused", {"axial": tmp_path / "axial", "empty": tmp_path / "empty"})
    assert not (tmp_path / "fused").exists()
