"""How a card names another model: the built-in one and its members by version, any other by its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from atriumseg.models import names
from atriumseg.models.checkpoint import default_model_path
from atriumseg.models.ensemble import load_ensemble_card
from atriumseg.models.names import model_name


def test_the_built_in_model_is_named_by_its_version_and_others_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = load_ensemble_card(default_model_path()).package_version
    assert shipped and model_name(default_model_path()) == f"built-in {shipped}"
    assert model_name(default_model_path() / "coronal") == f"built-in {shipped} (coronal)"  # a member, not its path
    assert model_name(tmp_path / "m") == str(tmp_path / "m") and model_name(None) is None
    monkeypatch.setattr(names, "__version__", "9.9.9")  # a later package that keeps the same model
    assert model_name(default_model_path()) == f"built-in {shipped}"
