"""``tools/atrium_level.py``: a case whose atrium was darkened is measured darker, and darker than its rim, and
its grey level rises across the edge where a bright atrium's falls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import load_tool, standin_model, write_msd_dataset, write_nifti

from atriumseg.pipeline.training.dataset import load_msd_dataset


def _darken_atrium(dataset: Path, case: str, factor: float) -> None:
    """Scale the intensities inside ``case``'s label by ``factor``."""
    image = nib.load(dataset / "imagesTr" / f"{case}.nii.gz")
    label = np.asanyarray(nib.load(dataset / "labelsTr" / f"{case}.nii.gz").dataobj) > 0
    array = np.asanyarray(image.dataobj).astype(np.float32)
    array[label] *= factor
    write_nifti(dataset / "imagesTr" / f"{case}.nii.gz", array, image.affine)


def test_a_darkened_atrium_scores_lower_and_below_its_rim(tmp_path: Path) -> None:
    tool = load_tool("atrium_level")
    dataset = write_msd_dataset(tmp_path / "data", [100, 101])
    _darken_atrium(dataset, "case_101", 0.1)  # below the background (0.15 of the atrium)
    model = standin_model(tmp_path / "model")
    card = tool.first_card(model)
    cases = {case.name: case for case in load_msd_dataset(dataset).cases}
    bright_frame = tool.framed(cases["case_100"], card, None)
    dark_frame = tool.framed(cases["case_101"], card, None)
    bright, dark = tool.atrium_level(*bright_frame), tool.atrium_level(*dark_frame)
    assert bright.low <= bright.median <= bright.high <= 1.0 and dark.low <= dark.median <= dark.high
    assert bright.median > 0.8 and dark.median < 0.5 * bright.median  # the atrium is the volume's brightest part
    assert bright.median / bright.rim > 1.0 > dark.median / dark.rim  # ... and, darkened, darker than its rim

    bright_edge, dark_edge = tool.edge_profile(*bright_frame), tool.edge_profile(*dark_frame)
    assert len(bright_edge) == len(dark_edge) == 2 * tool.PROFILE_REACH
    assert bright_edge[0] == pytest.approx(1.0, abs=0.1) and bright_edge[-1] < 0.5  # flat inside, dark outside
    assert dark_edge[0] == pytest.approx(1.0, abs=0.1) and dark_edge[-1] > 1.0  # the surround above the pool

    out = subprocess.run([sys.executable, str(Path(__file__).parents[2] / "tools" / "atrium_level.py"),
                          str(dataset), "-m", str(model), "--lowest", "1", "--profile"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith("Synthetic: 2 cases") and "(case_101)" in out[0] and out[0].endswith("1 below 1")
    assert len(out) == 3 and out[1].startswith("  across the edge") and " | " in out[1]
    assert out[2].startswith(f"  case_101: {dark.median:.3f}")
    assert out[2].endswith(" | ".join(" ".join(f"{v:.2f}" for v in half) for half in (dark_edge[:3], dark_edge[3:])))
