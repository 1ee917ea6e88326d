"""The README's example scripts run on synthetic data and do what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_cohort_walkthrough(tmp_path: Path, model_folder: Path) -> None:
    out = _run(EXAMPLES / "cohort_walkthrough.py", tmp_path, "--model", model_folder)
    assert out.count(" mL, sphericity") == 3
    assert (tmp_path / "volumes.png").stat().st_size > 1000
    assert len(list(tmp_path.glob("*.stl"))) == 3 and len(list(tmp_path.glob("*_mask.nii.gz"))) == 3
    again = tmp_path / "again"  # images after --model, as the README writes the command
    out = _run(EXAMPLES / "cohort_walkthrough.py", again, "--model", model_folder,
               *sorted(tmp_path.glob("synthetic_?.nii.gz")))
    assert out.count(" mL, sphericity") == 3


def test_cohort_walkthrough_reports_a_case_without_an_atrium(tmp_path: Path, model_folder: Path) -> None:
    blank = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 30), np.float32), np.eye(4)), blank)
    out = _run(EXAMPLES / "cohort_walkthrough.py", tmp_path / "out", blank, "--model", model_folder)
    assert "blank: no atrium found (empty mask), nothing to measure" in out
    assert (tmp_path / "out" / "volumes.png").is_file()


def test_monai_building_blocks_match_the_segmenter(model_folder: Path) -> None:
    for given in ([model_folder], []):  # a model folder, or by default the built-in model's first member
        out = _run(EXAMPLES / "monai_building_blocks.py", *given)
        agreement = float(out.split("voxels agreeing with Segmenter:")[1])
        assert agreement > 0.999, out


def test_msd_training_batches(synthetic_dataset: Path) -> None:
    out = _run(EXAMPLES / "msd_training_batches.py", synthetic_dataset)
    assert "image batch (8, 3, 32, 32)" in out and "header fix: None" in out
