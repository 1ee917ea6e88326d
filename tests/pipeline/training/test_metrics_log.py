"""metrics.csv: one row per epoch with the per-dataset validation figures, appended to on resume."""

from __future__ import annotations

import csv
from pathlib import Path

from atriumseg.pipeline.training.metrics_log import MetricsLog

PER_DATASET = {"Bright": {"case_003": {"dice": 0.9}}, "Dark": {"case_013": {"dice": 0.7}, "case_014": {"dice": 0.5}}}


def _rows(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((folder / "metrics.csv").open()))


def test_rows_carry_loss_learning_rate_and_each_datasets_figures(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, resume=False, dataset_names=["Bright", "Dark"])
    log.write(1, 50, 0.812345, 2e-3, {}, 12.34)
    log.write(2, 100, 0.5, 1e-3, PER_DATASET, 25.0)
    log.close()
    first, second = _rows(tmp_path)
    assert first == {"epoch": "1", "step": "50", "loss": "0.81234", "lr": "2.000e-03", "val_dice_mean": "",
                     "val_dice_Bright": "", "val_dice_Dark": "", "val_dice_per_case": "", "seconds": "12.3"}
    assert (second["val_dice_Bright"], second["val_dice_Dark"], second["val_dice_mean"]) == ("0.9000", "0.6000",
                                                                                             "0.7500")
    assert second["val_dice_per_case"] == "case_003=0.9000 case_013=0.7000 case_014=0.5000"


def test_a_resumed_run_appends_and_a_new_run_starts_over(tmp_path: Path) -> None:
    for resume, epoch in ((False, 1), (True, 2)):
        log = MetricsLog(tmp_path, resume=resume, dataset_names=["Bright"])
        log.write(epoch, epoch * 10, 0.5, 1e-3, {}, 1.0)
        log.close()
    assert [r["epoch"] for r in _rows(tmp_path)] == ["1", "2"]
    log = MetricsLog(tmp_path, resume=False, dataset_names=["Bright"])
    log.close()
    assert _rows(tmp_path) == []
