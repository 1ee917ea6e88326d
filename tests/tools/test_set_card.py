"""``tools/set_card.py``: inference-time fields set on a trained model's card (every member's, for an ensemble),
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
        load_tool("set_card").set_preprocessing(model / "card.json", centre_clip=2.0)  # a card file names its folder
    assert (model / "card.json").read_text() == before


def test_two_fields_at_once_leave_a_note_each_and_only_what_changed_is_noted(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert STANDIN_CARD.preprocessing.min_slice_size == 0
    model = standin_model(tmp_path / "model")
    clip = STANDIN_CARD.preprocessing.centre_clip
    monkeypatch.setattr(sys, "argv", ["set_card.py", str(model), "--min-slice-size", "160", "--centre-clip", str(clip)])
    load_tool("set_card").main()
    card = load_card(model)
    assert (card.preprocessing.min_slice_size, card.preprocessing.centre_clip) == (160, clip)
    [note] = card.provenance["set_after_training"]  # the cap already had its value: not a change
    assert (note["field"], note["from"], note["to"]) == ("preprocessing.min_slice_size", 0, 160)


def test_a_slice_size_for_a_whole_ensemble_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = assemble_ensemble(tmp_path / "ensemble", {"a": standin_model(tmp_path / "a")})
    monkeypatch.setattr(sys, "argv", ["set_card.py", str(ensemble), "--min-slice-size", "160"])
    with pytest.raises(SystemExit):
        load_tool("set_card").main()
    assert "one member's folder at a time" in capsys.readouterr().err
    assert load_card(ensemble / "a").preprocessing.min_slice_size == 0


def test_a_training_field_cannot_be_set_after_training(tmp_path: Path) -> None:
    model = standin_model(tmp_path / "model")
    with pytest.raises(ValueError, match="context cannot be set after training"):
        load_tool("set_card").set_preprocessing(model, context=2)


def test_nothing_to_set_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["set_card.py", str(standin_model(tmp_path / "model"))])
    with pytest.raises(SystemExit) as exit_info:
        load_tool("set_card").main()
    assert exit_info.value.code == 2 and "give --centre-clip, --min-slice-size or both" in capsys.readouterr().err
