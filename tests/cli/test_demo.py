"""``atriumseg demo``: the bundled sample segmented into a mask on its grid and an overlay picture."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from atriumseg.cli import EXIT_OK, EXIT_USAGE, main
from atriumseg.demo import SAMPLE, sample_paths


def test_demo_writes_the_mask_on_the_samples_grid_and_an_overlay(
    tmp_path: Path, model_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["demo", "-o", str(tmp_path), "--model", str(model_folder)]) == EXIT_OK
    image, mask = nib.load(sample_paths()[0]), nib.load(tmp_path / f"{SAMPLE}_mask.nii.gz")
    assert mask.shape == image.shape and np.array_equal(mask.affine, image.affine)
    assert (tmp_path / f"{SAMPLE}_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Dice against the bundled reference label" in capsys.readouterr().out


def test_an_output_that_is_a_file_is_a_usage_error_before_the_sample_is_segmented(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("mine")
    monkeypatch.setattr("atriumseg.demo.run_demo", lambda *_: pytest.fail("the sample was segmented"))
    with caplog.at_level(logging.ERROR):
        assert main(["demo", "-o", str(tmp_path / "afile"), "--model", str(model_folder)]) == EXIT_USAGE
    assert "afile: exists and is not a folder" in caplog.text and (tmp_path / "afile").read_text() == "mine"


def test_a_model_that_does_not_load_leaves_no_output_folder(tmp_path: Path) -> None:
    assert main(["demo", "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert not (tmp_path / "out").exists()
