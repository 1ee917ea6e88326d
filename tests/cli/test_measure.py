"""``atriumseg measure``: world-unit measurements of mask files in a CSV, bad masks one line each."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import write_nifti

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_OK, EXIT_USAGE, main


def _box_mask(path: Path) -> Path:
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:15, 5:15, 5:15] = 1  # 1000 voxels of 2 x 2 x 2 mm = 8 mL
    return write_nifti(path, mask, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_measure_writes_volumes_in_millilitres(tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    assert main(["measure", str(_box_mask(tmp_path / "p.1.nii.gz")), "-o", str(out)]) == EXIT_OK
    (row,) = csv.DictReader(out.open())
    assert row["case"] == "p.1" and float(row["volume_ml"]) == pytest.approx(8.0)


def test_a_bad_mask_fails_alone_and_an_existing_csv_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good, bad, out = _box_mask(tmp_path / "good.nii.gz"), tmp_path / "bad.nii.gz", tmp_path / "m.csv"
    bad.write_bytes(b"not a mask")
    with caplog.at_level(logging.ERROR):
        assert main(["measure", str(good), str(bad), "-o", str(out)]) == EXIT_CASE_FAILED
    assert "bad.nii.gz" in caplog.text
    assert [r["case"] for r in csv.DictReader(out.open())] == ["good"]
    before = out.read_bytes()
    caplog.clear()
    assert main(["measure", str(good), str(bad), "-o", str(out)]) == EXIT_USAGE  # found before any mask is read
    assert out.read_bytes() == before and "bad.nii.gz" not in caplog.text and "--overwrite" in caplog.text


def test_an_output_under_a_file_is_a_usage_error_in_words(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "afile").write_text("mine")
    with caplog.at_level(logging.ERROR):
        assert main(["measure", str(_box_mask(tmp_path / "p.nii.gz")), "-o", str(tmp_path / "afile" / "m.csv")]) \
            == EXIT_USAGE
    assert "afile: exists and is not a folder" in caplog.text and "Errno" not in caplog.text
