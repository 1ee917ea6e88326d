"""``atriumseg evaluate``: per-case metrics in a CSV; a failing case is one line, and the others go on."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import write_nifti

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_OK, EXIT_USAGE, main
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (40, 42, 30)


def _cases(root: Path, seeds: dict[str, int], affine: np.ndarray) -> None:
    """Synthetic images in ``root/img`` and their labels in ``root/lab``, one per name and seed."""
    for folder in ("img", "lab"):
        (root / folder).mkdir()
    for name, seed in seeds.items():
        case = synthetic_case(SHAPE, affine, seed=seed)
        write_nifti(root / "img" / f"{name}.nii.gz", case.image, case.affine)
        write_nifti(root / "lab" / f"{name}.nii.gz", case.label, case.affine)


def test_evaluate_writes_one_row_per_case(tmp_path: Path, model_folder: Path) -> None:
    _cases(tmp_path, {"p1": 3, "p2": 4}, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS", (0, 0, 0)))
    out = tmp_path / "eval.csv"
    code = main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                 "-o", str(out), "--quiet", "--cases", "p2"])
    assert code == EXIT_OK
    (row,) = csv.DictReader(out.open())
    assert row["case"] == "p2" and 0.0 <= float(row["dice"]) <= 1.0


def test_evaluate_prints_volume_errors_and_their_means(tmp_path: Path, model_folder: Path, capsys) -> None:
    _cases(tmp_path, {"p1": 41, "p2": 42}, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 10, 0)))
    out = tmp_path / "eval.csv"
    code = main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                 "-o", str(out), "--quiet"])
    assert code == EXIT_OK
    rows = list(csv.DictReader(out.open()))
    assert [r["case"] for r in rows] == ["p1", "p2"] and all(float(r["dice"]) > 0.8 for r in rows), rows
    errors = [float(r["volume_error_pct"]) for r in rows]
    assert [float(r["abs_volume_error_pct"]) for r in rows] == [abs(e) for e in errors]
    printed = capsys.readouterr().out
    assert "vol err %" in printed.splitlines()[0]
    assert f"volume error mean {sum(errors) / 2:+.1f}%" in printed and f"CSV: {out}" in printed


def test_evaluate_tta_scores_other_masks(tmp_path: Path, model_folder: Path) -> None:
    _cases(tmp_path, {"p1": 41, "p2": 42}, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 10, 0)))
    scored = {}
    for option in ([], ["--tta"]):
        out = tmp_path / f"eval{len(option)}.csv"
        assert main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                     "-o", str(out), "--quiet", *option]) == EXIT_OK
        scored[bool(option)] = {row["case"]: row["dice"] for row in csv.DictReader(out.open())}
    assert list(scored[True]) == ["p1", "p2"] and scored[True] != scored[False]  # the masks segment --tta writes


def test_evaluate_reports_an_unreadable_image_in_one_line(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for folder in ("img", "lab"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "p1.nii.gz").write_bytes(b"not a nifti file at all")
    with caplog.at_level(logging.ERROR):
        code = main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                     "-o", str(tmp_path / "eval.csv"), "--quiet"])
    assert code == EXIT_CASE_FAILED
    assert "p1.nii.gz" in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "eval.csv").exists()  # no case scored: no CSV


def test_a_failing_case_is_left_out_and_the_others_scored(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _cases(tmp_path, {"p1": 41, "p2": 42, "p3": 43}, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 10, 0)))
    case = synthetic_case((30, 30, 30), make_affine((30, 30, 30)), seed=42)
    write_nifti(tmp_path / "lab" / "p2.nii.gz", case.label, case.affine)  # p2's label on another grid
    out = tmp_path / "eval.csv"
    with caplog.at_level(logging.ERROR):
        code = main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                     "-o", str(out), "--quiet"])
    assert code == EXIT_CASE_FAILED
    assert [row["case"] for row in csv.DictReader(out.open())] == ["p1", "p3"]
    assert f"p2: {tmp_path / 'lab' / 'p2.nii.gz'}: image (40, 42, 30) != label (30, 30, 30)" in caplog.text
    assert "1 of 3 cases failed, left out of the figures: p2" in caplog.text


def test_missing_folders_are_a_usage_error(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["evaluate", str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(model_folder),
                     "-o", str(tmp_path / "new" / "eval.csv")])
    assert code == EXIT_USAGE and not (tmp_path / "new").exists(), "the output's folder is made only to write it"
    assert f"{tmp_path / 'b'}: no such folder" in caplog.text and "Errno" not in caplog.text


def test_an_existing_csv_is_kept_unless_overwrite_is_given(tmp_path: Path, model_folder: Path) -> None:
    for folder in ("img", "lab"):
        (tmp_path / folder).mkdir()
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS", (0, 0, 0)), seed=5)
    write_nifti(tmp_path / "img" / "p1.nii.gz", case.image, case.affine)
    write_nifti(tmp_path / "lab" / "p1.nii.gz", case.label, case.affine)
    out = tmp_path / "eval.csv"
    out.write_text("earlier results\n")
    command = ["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
               "-o", str(out), "--quiet"]
    assert main(command) == EXIT_USAGE and out.read_text() == "earlier results\n"
    assert main([*command, "--overwrite"]) == EXIT_OK
    assert next(csv.DictReader(out.open()))["case"] == "p1"


@pytest.mark.parametrize("where", ["under-a-file", "a-folder"])
def test_an_output_that_cannot_be_written_is_a_usage_error_before_any_case_is_scored(
    tmp_path: Path, model_folder: Path, where: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("img", "lab"):
        (tmp_path / folder).mkdir()
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS", (0, 0, 0)), seed=5)
    write_nifti(tmp_path / "img" / "p1.nii.gz", case.image, case.affine)
    write_nifti(tmp_path / "lab" / "p1.nii.gz", case.label, case.affine)
    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "afile" / "eval.csv" if where == "under-a-file" else tmp_path / "img"
    monkeypatch.setattr("atriumseg.cli.options.load_segmenter", lambda *_: pytest.fail("the model loaded"))
    with caplog.at_level(logging.ERROR):
        assert main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                     "-o", str(out), "--quiet"]) == EXIT_USAGE
    reason = "exists and is not a folder" if where == "under-a-file" else "is a folder; give a file name"
    assert reason in caplog.text and "Errno" not in caplog.text
    assert (tmp_path / "afile").read_text() == "mine"
