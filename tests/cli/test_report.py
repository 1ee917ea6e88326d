"""``atriumseg report``: the merged report rebuilt from an output folder's records."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

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


def test_a_missing_folder_or_a_file_is_a_usage_error_in_words(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["report", str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert not (tmp_path / "nowhere").exists() and "nowhere: no such folder" in caplog.text
    (tmp_path / "afile").write_text("mine")
    assert main(["report", str(tmp_path / "afile")]) == EXIT_USAGE
    assert "afile: exists and is not a folder" in caplog.text and (tmp_path / "afile").read_text() == "mine"


def test_a_folder_of_no_segment_run_is_refused_and_its_report_csv_kept(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "report.csv").write_text("patient,score\np1,42\n")  # the inputs folder, typed by mistake
    assert main(["report", str(tmp_path)]) == EXIT_USAGE
    assert "no atriumseg records" in caplog.text
    assert (tmp_path / "report.csv").read_text() == "patient,score\np1,42\n" and not (tmp_path / "report.json").exists()
