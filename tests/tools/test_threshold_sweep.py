"""``tools/threshold_sweep.py``: at the card's own rule it scores what cross-validation scores; a lower threshold
gives each case at least the volume of a higher one; member weights mix an ensemble's members as ``fuse`` does."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import STANDIN_LEVEL, load_tool, standin_folds, standin_model

from atriumseg.models.checkpoint import load_card
from atriumseg.models.ensemble import assemble_ensemble
from atriumseg.pipeline.training.validation import out_of_fold


@pytest.fixture(scope="module")
def threshold_sweep() -> ModuleType:
    return load_tool("threshold_sweep")


def test_the_cards_threshold_scores_as_cross_validation_and_lower_ones_grow_the_masks(
    threshold_sweep: ModuleType, tmp_path: Path, synthetic_dataset: Path
) -> None:
    folds = standin_folds(tmp_path, synthetic_dataset)
    scores, own = threshold_sweep.sweep(folds, [0.2, 0.9], device="cpu")
    assert own == 0.5 and sorted(scores[synthetic_dataset.name]) == [(None, 0.2), (None, 0.5), (None, 0.9)]
    by_level = {level: dict(rows) for (_, level), rows in scores[synthetic_dataset.name].items()}
    assert by_level[0.5] == dict(out_of_fold(folds, device="cpu").rows[synthetic_dataset.name])
    for case in by_level[0.5]:
        volumes = [by_level[level][case].predicted_ml for level in (0.2, 0.5, 0.9)]
        assert volumes == sorted(volumes, reverse=True), (case, volumes)
    assert any(by_level[0.2][case].predicted_ml > by_level[0.9][case].predicted_ml for case in by_level[0.5])
    table = threshold_sweep.table(scores, own)
    assert "| the card's | **0.5** (the card's) |" in table and len(table.splitlines()) == 2 + 3


def test_weights_mix_the_members_of_each_folds_ensemble(
    threshold_sweep: ModuleType, tmp_path: Path, synthetic_dataset: Path
) -> None:
    """Weight 1 on the first member alone scores that member's fold models; equal weights score the card's mean; all
    the weight on the member that calls dimmer pixels atrium grows every mask."""
    folds = standin_folds(tmp_path, synthetic_dataset)
    wider = [standin_model(tmp_path / f"wider{k}", load_card(fold), level=STANDIN_LEVEL - 0.2 * k - 0.15)
             for k, fold in enumerate(folds)]
    ensembles = [assemble_ensemble(tmp_path / f"pair{k}", {"a": fold, "b": wide})
                 for k, (fold, wide) in enumerate(zip(folds, wider, strict=True))]
    scores, own = threshold_sweep.sweep(ensembles, [], device="cpu", weights=[(1.0, 0.0), (1.0, 1.0), (0.0, 2.0)])
    mixes = {mix: dict(rows) for (mix, _), rows in scores[synthetic_dataset.name].items()}
    assert mixes[(1.0, 0.0)] == dict(out_of_fold(folds, device="cpu").rows[synthetic_dataset.name])
    assert mixes[(1.0, 1.0)] == mixes[None] != mixes[(1.0, 0.0)]
    assert all(mixes[(0.0, 2.0)][case].predicted_ml > mixes[(1.0, 0.0)][case].predicted_ml for case in mixes[None])
    assert "| 0:2 | 0.5 |" in threshold_sweep.table(scores, own)
    with pytest.raises(ValueError, match=r"one weight per member; the fold models have 2 members, got \['1,1,1'\]"):
        threshold_sweep.sweep(ensembles, [], device="cpu", weights=[(1.0, 1.0, 1.0)])


def test_one_fold_is_scored_with_partial_only(
    threshold_sweep: ModuleType, tmp_path: Path, synthetic_dataset: Path
) -> None:
    fold = standin_folds(tmp_path, synthetic_dataset)[1]
    with pytest.raises(ValueError, match="cover folds"):
        threshold_sweep.sweep([fold], [0.4], device="cpu")
    scores, _ = threshold_sweep.sweep([fold], [0.4], device="cpu", partial=True)
    assert sorted(case for case, _ in scores[synthetic_dataset.name][(None, 0.5)]) == ["case_102", "case_103"]


@pytest.mark.parametrize(("option", "values", "reason"), [
    ("--thresholds", ["0.5", "1.0"], "strictly between 0 and 1"),
    ("--weights", ["1,x"], "numbers separated by commas"),
    ("--weights", ["0,0"], "must not be negative nor all 0"),
])
def test_options_out_of_range_are_refused(
    threshold_sweep: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], option: str,
    values: list[str], reason: str
) -> None:
    thresholds = [] if option == "--thresholds" else ["--thresholds", "0.5"]
    monkeypatch.setattr(sys, "argv", ["threshold_sweep.py", "fold0", *thresholds, option, *values])
    with pytest.raises(SystemExit, match=reason if option == "--thresholds" else "2"):
        threshold_sweep.main()
    assert option == "--thresholds" or reason in capsys.readouterr().err
