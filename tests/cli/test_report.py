"""``atriumseg report``: the merged report rebuilt from an output folder's records."""

from __future__ import annotations

import csv
from pathlib import Path

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_OK, EXIT_USAGE, main
from atriumseg.pipeline.batch.report import FAILED, OK, CaseResult, write_record


def test_report_rebuilds_the_csv_from_the_records(tmp_path: Path) -> None:
    write_record(tmp_path, CaseResult("a", "in/a.nii.gz", str(tmp_path / "a.nii.gz"), OK, volume_ml=80.5, voxels=9))
    assert main(["report", str(tmp_path)]) == EXIT_OK
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [(r["case"], r["status"], float(r["volume_ml"])) for r in rows] == [("a", OK, 80.5)]
    write_record(tmp_path, CaseResult("b", "in/b.nii.gz", "", FAILED, "b: unreadable"))
    assert main(["report", str(tmp_path)]) == EXIT_CASE_FAILED
    assert [r["case"] for r in csv.DictReader((tmp_path / "report.csv").open())] == ["a", "b"]


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert not (tmp_path / "nowhere").exists()
