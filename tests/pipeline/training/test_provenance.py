"""What a run records on its card: the starting model by name, and the lineage carried on by --init."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_config, write_msd_dataset

from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.ensemble import load_ensemble_card
from atriumseg.models.lineage import stage
from atriumseg.pipeline.training import provenance
from atriumseg.pipeline.training.provenance import model_name
from atriumseg.pipeline.training.trainer import train


def test_the_built_in_model_is_named_by_its_version_and_others_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = load_ensemble_card(default_model_path()).package_version
    assert shipped and model_name(default_model_path()) == f"built-in {shipped}"
    assert model_name(default_model_path() / "coronal") == f"built-in {shipped} (coronal)"  # a member, not its path
    assert model_name(tmp_path / "m") == str(tmp_path / "m") and model_name(None) is None
    monkeypatch.setattr(provenance, "__version__", "9.9.9")  # a later package that keeps the same model
    assert model_name(default_model_path()) == f"built-in {shipped}"


@pytest.mark.slow
def test_an_init_run_records_the_earlier_stages_and_its_own(tmp_path: Path, synthetic_dataset: Path) -> None:
    first = train(tiny_config(synthetic_dataset, tmp_path / "first", epochs=1, steps_per_epoch=2),
                  show_progress=False)
    more = write_msd_dataset(tmp_path / "more", [200, 201, 202], name="More")
    second_config = tiny_config(more, tmp_path / "second", epochs=2, steps_per_epoch=3, val_cases=("case_202",),
                                val_every=2, init=first.last)
    train(second_config, show_progress=False)
    earlier, card = load_card(first.last), load_card(tmp_path / "second" / "best")
    lineage = card.provenance["lineage"]
    assert lineage[0] == earlier.provenance["lineage"][0] == stage(earlier.provenance)
    assert lineage[0]["started_from"] is None and lineage[0]["steps"] == 2
    assert lineage[0]["data"] == {"Synthetic": {"train": 3, "validation": 1}}
    assert lineage[1]["started_from"] == str(first.last) and lineage[1]["run"] == str(tmp_path / "second")
    assert (lineage[1]["epochs"], lineage[1]["steps"]) == (2, 6)
    assert lineage[1]["data"] == {"More": {"train": 2, "validation": 1}}
    assert len(lineage) == 2 and all(s["minutes"] >= 0 for s in lineage)
