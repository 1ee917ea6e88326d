"""``tools/missed_volume.py``: where a mask misses its reference, by depth and by side, on a ball of known volume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool, write_nifti

from atriumseg.synthetic import make_affine

SPACING = (1.0, 1.0, 2.0)


def _ball(shape: tuple[int, ...], radius_mm: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2.0
    distance = np.sqrt(sum(((grid[a] - centre[a]) * SPACING[a]) ** 2 for a in range(3)))
    return distance <= radius_mm


def test_a_mask_missing_one_side_of_a_ball_is_measured_there() -> None:
    missed_volume = load_tool("missed_volume").missed_volume
    truth = _ball((40, 40, 20), 15.0)
    mask = truth.copy()
    mask[:, 25:] = False  # the mask stops 9.5 mm short of the ball towards the second axis's letter (A)
    figures = missed_volume(truth, mask, SPACING, "RAS")
    missed_ml = (truth & ~mask).sum() * 2.0 / 1000.0
    assert figures["missed"] == pytest.approx(missed_ml) and figures["added"] == 0.0
    assert figures["reference"] == pytest.approx(truth.sum() * 2.0 / 1000.0)
    assert figures["sides"]["A"] == pytest.approx(missed_ml) and figures["sides"]["P"] == 0.0
    assert figures["sides"]["R"] == pytest.approx(figures["sides"]["L"])  # symmetric across the first axis
    assert 0 < figures["missed_near"] < missed_ml and 1.0 <= figures["median_depth"] <= 5.0


def test_the_command_reads_the_grid_and_names_the_sides_by_the_header(tmp_path: Path) -> None:
    shape = (40, 40, 20)
    affine = make_affine(shape, spacing=SPACING, axcodes="LPS")
    truth = _ball(shape, 15.0)
    mask = truth.copy()
    mask[:10] = False  # the low end of the first axis, which runs to L: missed on the R side
    reference = write_nifti(tmp_path / "ref.nii.gz", truth.astype(np.uint8), affine)
    written = write_nifti(tmp_path / "case_1.nii.gz", mask.astype(np.uint8), affine)
    tool = Path(__file__).parents[2] / "tools" / "missed_volume.py"
    out = subprocess.run([sys.executable, str(tool), str(reference), str(written)], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("case_1: reference") and "R 0.0 / L 0.0" not in out
    side = out.splitlines()[2]
    assert side.startswith("  missed by side") and "P 0.0 / A 0.0" not in side
    assert float(side.split("R ")[1].split(" /")[0]) > 0 and side.split("/ L ")[1].startswith("0.0")
