"""The evaluation table: CSV rows and printed text carry every metric, volume errors included."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.table import format_table, write_metrics_csv

ROWS = [
    ("la_019", CaseMetrics(0.883, 6.25, 1.83, 95.0, 116.2, -18.2444, 18.2444)),
    ("la_021", CaseMetrics(0.920, 3.01, 1.07, 85.0, 83.8, 1.4320, 1.4320)),
]


def test_csv_has_one_row_per_case_with_every_metric(tmp_path: Path) -> None:
    path = write_metrics_csv(ROWS, tmp_path / "val.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == [
        "case", "dice", "hd95_mm", "asd_mm", "predicted_ml", "true_ml", "volume_error_pct", "abs_volume_error_pct",
    ]
    assert rows[0]["case"] == "la_019" and float(rows[0]["volume_error_pct"]) == pytest.approx(-18.2444)
    assert float(rows[1]["abs_volume_error_pct"]) == pytest.approx(1.432)
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


def test_printed_table_shows_volume_errors_and_their_means() -> None:
    lines = format_table(ROWS).splitlines()
    assert lines[0].split()[:2] == ["case", "Dice"] and "vol err %" in lines[0] and "|vol err| %" in lines[0]
    assert lines[1].split() == ["la_019", "0.8830", "6.25", "1.83", "95.0", "116.2", "-18.2", "18.2"]
    assert "worst 0.8830 (la_019)" in lines[-1]
    assert "volume error mean -8.4%, absolute 9.8%" in lines[-1]
