"""Records and the merged report: NaN kept, older records still load, a case complete only with its outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from atriumseg.pipeline.batch.report import (
    FAILED,
    OK,
    QC_INDEX,
    SKIPPED,
    CaseResult,
    collect,
    is_complete,
    read_record,
    rebuild_report,
    summary_table,
    write_record,
)


def test_a_record_round_trips_with_nan_and_rounding(tmp_path: Path) -> None:
    result = CaseResult("p.1", "in/p.1.nii.gz", str(tmp_path / "p.1.nii.gz"), OK, volume_ml=81.123456, voxels=7,
                        flags=("touches the edge",), extra_outputs=(str(tmp_path / "p.1.stl"),))
    write_record(tmp_path, result)
    back = read_record(tmp_path, "p.1")
    assert back.volume_ml == 81.1235 and math.isnan(back.sphericity) and back.flags == ("touches the edge",)
    assert json.loads((tmp_path / ".atriumseg" / "records" / "p.1.json").read_text())["sphericity"] is None


def test_an_older_record_without_the_newer_columns_still_loads(tmp_path: Path) -> None:
    path = tmp_path / ".atriumseg" / "records" / "old.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"case": "old", "input": "in/old.nii.gz", "output": "", "status": "failed"}))
    (old,) = collect(tmp_path)
    assert (old.case, old.status, old.patient_id) == ("old", FAILED, "") and math.isnan(old.lavi_ml_m2)


def test_a_case_is_complete_only_when_ok_and_every_listed_output_exists(tmp_path: Path) -> None:
    mask, mesh = tmp_path / "p.nii.gz", tmp_path / "p.stl"
    mask.write_bytes(b"m")
    result = CaseResult("p", "in/p.nii.gz", str(mask), OK, extra_outputs=(str(mesh),))
    assert not is_complete(result)
    mesh.write_bytes(b"s")
    assert is_complete(result) and not is_complete(None)
    assert not is_complete(CaseResult("p", "in/p.nii.gz", str(mask), FAILED))


def test_the_report_merges_every_record_and_draws_the_sheet_when_asked(tmp_path: Path) -> None:
    write_record(tmp_path, CaseResult("b", "in/b.nii.gz", "", FAILED, "in/b.nii.gz: unreadable"))
    write_record(tmp_path, CaseResult("a", "in/a.nii.gz", "a.nii.gz", OK, volume_ml=80.0, voxels=1000,
                                      flags=("small", "edge")))
    write_record(tmp_path, CaseResult("c", "in/c.txt", "", SKIPPED, "not an image file"))
    write_record(tmp_path, CaseResult("d", "in/d.nii.gz", "d.nii.gz", OK, volume_ml=0.0, flags=("empty mask",)))
    results = rebuild_report(tmp_path, qc=True)
    assert [r.case for r in results] == ["a", "b", "c", "d"]
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [(r["case"], r["status"], r["flags"]) for r in rows] == [("a", OK, "small;edge"), ("b", FAILED, ""),
                                                                    ("c", SKIPPED, ""), ("d", OK, "empty mask")]
    # no mask made: no voxel count, so a failure never reads as an empty mask (d's 0 voxels)
    assert [(r["voxels"], r["volume_ml"]) for r in rows] == [("1000", "80.0"), ("", ""), ("", ""), ("0", "0.0")]
    report = json.loads((tmp_path / "report.json").read_text())
    assert [case["voxels"] for case in report["cases"]] == [1000, None, None, 0]
    totals = report["totals"]
    assert (totals["cases"], totals[OK], totals[FAILED], totals[SKIPPED], totals["flagged"]) == (4, 2, 1, 1, 2)
    assert "3 flagged or failed" in (tmp_path / QC_INDEX).read_text()
    table = summary_table(results)
    assert "FAILED  b: in/b.nii.gz: unreadable" in table and "FLAGGED a: small, edge" in table


def test_outputs_are_recorded_relative_to_their_folder_and_read_back_under_it(tmp_path: Path) -> None:
    out, copy = tmp_path / "out", tmp_path / "copy"
    result = CaseResult("p.2", "/scans/p.2.nii.gz", str(out / "p.2.nii.gz"), OK, qc_png=str(out / "qc" / "p.2.png"),
                        extra_outputs=(str(out / "p.2.stl"), "/elsewhere/p.2.csv"))
    write_record(out, result)
    stored = json.loads((out / ".atriumseg" / "records" / "p.2.json").read_text())
    assert (stored["output"], stored["qc_png"], stored["input"]) == ("p.2.nii.gz", "qc/p.2.png", "/scans/p.2.nii.gz")
    assert stored["extra_outputs"] == ["p.2.stl", "/elsewhere/p.2.csv"]  # a path outside the folder stays absolute
    assert read_record(out, "p.2") == result
    (copy / ".atriumseg").mkdir(parents=True)
    (out / ".atriumseg" / "records").rename(copy / ".atriumseg" / "records")
    (moved,) = collect(copy)
    assert (moved.output, moved.extra_outputs[0]) == (str(copy / "p.2.nii.gz"), str(copy / "p.2.stl"))


def test_a_record_read_with_a_relative_folder_names_absolute_outputs_and_older_records_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_record(Path("out"), CaseResult("q", "/scans/q.nii.gz", "out/q.nii.gz", OK))
    assert read_record(Path("out"), "q").output == str(tmp_path / "out" / "q.nii.gz")
    (tmp_path / "out" / "q.nii.gz").write_text("mask")
    assert is_complete(read_record(tmp_path / "out", "q"))
    old = {"case": "o", "input": "/scans/o.nii.gz", "output": str(tmp_path / "first" / "o.nii.gz"), "status": OK}
    (tmp_path / "out" / ".atriumseg" / "records" / "o.json").write_text(json.dumps(old))
    assert read_record(Path("out"), "o").output == old["output"]  # written before records were relative
