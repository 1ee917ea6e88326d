"""``tools/threshold_sweep.py``: at the card's own threshold it scores what cross-validation scores; a lower threshold
gives each case at least the volume of a higher one."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import load_tool, standin_folds

from atriumseg.pipeline.training.validation import out_of_fold


@pytest.fixture(scope="module")
def threshold_sweep() -> ModuleType:
    return load_tool("threshold_sweep")


def test_the_cards_threshold_scores_as_cross_validation_and_lower_ones_grow_the_masks(
    threshold_sweep: ModuleType, tmp_path: Path, synthetic_dataset: Path
) -> None:
    folds = standin_folds(tmp_path, synthetic_dataset)
    scores, own = threshold_sweep.sweep(folds, [0.2, 0.9], device="cpu")
    assert own == 0.5 and sorted(scores[synthetic_dataset.name]) == [0.2, 0.5, 0.9]
    by_level = {level: dict(rows) for level, rows in scores[synthetic_dataset.name].items()}
    assert by_level[0.5] == dict(out_of_fold(folds, device="cpu").rows[synthetic_dataset.name])
    for case in by_level[0.5]:
        volumes = [by_level[level][case].predicted_ml for level in (0.2, 0.5, 0.9)]
        assert volumes == sorted(volumes, reverse=True), (case, volumes)
    assert any(by_level[0.2][case].predicted_ml > by_level[0.9][case].predicted_ml for case in by_level[0.5])
    table = threshold_sweep.table(scores, own)
    assert "| **0.5** (the card's) |" in table and len(table.splitlines()) == 2 + 3


def test_thresholds_outside_zero_to_one_are_refused(
    threshold_sweep: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["threshold_sweep.py", "fold0", "--thresholds", "0.5", "1.0"])
    with pytest.raises(SystemExit, match="strictly between 0 and 1"):
        threshold_sweep.main()
