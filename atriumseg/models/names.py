"""How a card names another model (the one a run started from, those an average was made of): by its path, or the
built-in model and its members by the version they were shipped with, not where the package is installed."""

from __future__ import annotations

from pathlib import Path

from atriumseg._version import __version__
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card


def model_name(folder: Path | None) -> str | None:
    """How a card names a model it started from or averaged: ``built-in <version>`` for the shipped one (the
    version its card was shipped with, which a later package keeping the same model does not change) and
    ``built-in <version> (<member>)`` for one of its members, not their install path; any other by its path."""
    if folder is None:
        return None
    default, resolved = default_model_path().resolve(), Path(folder).resolve()
    if default not in (resolved, resolved.parent):
        return str(folder)
    card = load_ensemble_card(default) if is_ensemble(default) else load_card(default)
    name = f"built-in {card.package_version or __version__}"
    return name if resolved == default else f"{name} ({resolved.name})"
