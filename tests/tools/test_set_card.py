"""``tools/set_card.py``: an inference-time field set on a trained model's card (every member's, for an ensemble),
the weights untouched, and the change recorded in the provenance."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import STANDIN_CARD, load_tool, standin_model

from atriumseg.models.card import CardError
from atriumseg.models.checkpoint import WEIGHTS_NAME, load_card
from atriumseg.models.ensemble import assemble_ensemble


def test_every_member_of_an_ensemble_gets_the_cap_and_a_record_of_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    uncapped = replace(STANDIN_CARD, preprocessing=replace(STANDIN_CARD.preprocessing, centre_clip=0.0))
    ensemble = assemble_ensemble(tmp_path / "ensemble", {"a": standin_model(tmp_path / "a", uncapped),
                                                         "b": standin_model(tmp_path / "b", uncapped)})
    weights = (ensemble / "a" / WEIGHTS_NAME).read_bytes()
    monkeypatch.setattr(sys, "argv", ["set_card.py", str(ensemble), "--centre-clip", "0.5"])
    load_tool("set_card").main()
    for name in ("a", "b"):
        card = load_card(ensemble / name)
        assert card.preprocessing.centre_clip == 0.5
        [note] = card.provenance["set_after_training"]
        assert (note["field"], note["from"], note["to"]) == ("preprocessing.centre_clip", 0.0, 0.5)
    assert (ensemble / "a" / WEIGHTS_NAME).read_bytes() == weights
    assert load_card(tmp_path / "a").preprocessing.centre_clip == 0.0  # the source of the member: as it was
    load_tool("set_card").main()  # again: nothing to change, nothing more recorded
    assert len(load_card(ensemble / "a").provenance["set_after_training"]) == 1


def test_a_value_the_card_refuses_leaves_the_card_as_it_was(tmp_path: Path) -> None:
    model = standin_model(tmp_path / "model")
    before = (model / "card.json").read_text()
    with pytest.raises(CardError, match="centre_clip must be a number in"):
        load_tool("set_card").set_centre_clip(model / "card.json", 2.0)  # a model's card file names its folder
    assert (model / "card.json").read_text() == before
