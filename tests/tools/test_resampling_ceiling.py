"""``tools/resampling_ceiling.py``: what a model's grid alone costs a perfect mask, and one frame per ensemble."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from helpers import STANDIN_CARD, load_tool, standin_model, write_nifti

from atriumseg.models.ensemble import assemble_ensemble
from atriumseg.synthetic import make_affine

CARD = replace(STANDIN_CARD, preprocessing=replace(STANDIN_CARD.preprocessing, plane="axial", slice_spacing=1.5))


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("resampling_ceiling")


def _sphere(path: Path, spacing: float, codes: str = "LPS") -> Path:
    shape = (int(48 / spacing),) * 3
    affine = make_affine(shape, (spacing,) * 3, codes, (10, -5, 20))
    centre = (np.asarray(shape) - 1) / 2
    grid = np.indices(shape).transpose(1, 2, 3, 0) - centre
    return write_nifti(path, (np.linalg.norm(grid * spacing, axis=-1) < 12.0).astype(np.uint8), affine)


def test_a_finer_label_loses_a_little_through_a_coarser_grid(tool: ModuleType, tmp_path: Path) -> None:
    fine = tool.ceiling_dice(_sphere(tmp_path / "fine.nii.gz", 0.5), CARD, 0.5)
    same = tool.ceiling_dice(_sphere(tmp_path / "same.nii.gz", 1.5, "RAS"), replace(
        CARD, preprocessing=replace(CARD.preprocessing, orientation="RAS")), 0.5)
    assert 0.9 < fine < 0.995  # 0.5 mm voxels through 1.5 mm ones: the boundary blurs, the sphere stays
    assert same > 0.999  # on the model's own grid nothing is lost


def test_an_ensemble_of_two_frames_is_refused(tool: ModuleType, tmp_path: Path) -> None:
    coarse = replace(CARD, preprocessing=replace(CARD.preprocessing, spacing=(2.0, 2.0)))
    members = {"a": standin_model(tmp_path / "a", CARD), "b": standin_model(tmp_path / "b", coarse)}
    with pytest.raises(ValueError, match="members in different frames"):
        tool.frame_card(assemble_ensemble(tmp_path / "fused", members))
    same = assemble_ensemble(tmp_path / "same", {"a": members["a"], "c": standin_model(tmp_path / "c", CARD)})
    card, threshold = tool.frame_card(same)
    assert card.preprocessing == CARD.preprocessing and threshold == 0.5
