"""Validation figures: each dataset's mean Dice, an overall figure in which each dataset counts once, and the
cross-validated figures a card carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.table import write_metrics_csv
from atriumseg.pipeline.training.validation import cross_validation_record, read_metrics_csv, validation_summary


def test_overall_is_the_mean_of_the_dataset_means_not_of_all_cases() -> None:
    per_dataset = {
        "bSSFP": {"a": {"dice": 0.9}, "b": {"dice": 0.8}, "c": {"dice": 0.7}},
        "LGE": {"x": {"dice": 0.5}},
        "empty": {},
    }
    summary = validation_summary(per_dataset)
    assert summary == pytest.approx({"bSSFP": 0.8, "LGE": 0.5, "overall": 0.65})


def test_no_validation_gives_no_figures() -> None:
    assert validation_summary({}) == {} and validation_summary({"bSSFP": {}}) == {}


def _metrics(dice: float, error: float) -> CaseMetrics:
    return CaseMetrics(dice=dice, hd95_mm=2.0, asd_mm=0.5, predicted_ml=100 + error, true_ml=100.0,
                       volume_error_pct=error, abs_volume_error_pct=abs(error))


def test_cross_validated_figures_summarise_each_protocols_out_of_fold_cases(tmp_path: Path) -> None:
    bssfp = [("la_003", _metrics(0.92, -4.0)), ("la_004", _metrics(0.88, 6.0))]
    write_metrics_csv(bssfp, tmp_path / "bssfp.csv")
    record = cross_validation_record({"LeftAtrium": read_metrics_csv(tmp_path / "bssfp.csv"),
                                      "LGE": [("x", _metrics(0.9, 3.0))]}, folds=5, command="made so")
    assert record["folds"] == 5 and record["command"] == "made so"
    figures = record["per_dataset"]["LeftAtrium"]
    assert figures["cases"] == 2 and figures["worst_case"] == "la_004"
    assert figures["dice_mean"] == pytest.approx(0.90) and figures["abs_volume_error_mean_pct"] == pytest.approx(5.0)
    assert figures["volume_error_mean_pct"] == pytest.approx(1.0)
    assert record["per_dataset"]["LGE"]["dice_mean"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="2 or more folds"):
        cross_validation_record({"LGE": [("x", _metrics(0.9, 3.0))]}, folds=1, command="")
