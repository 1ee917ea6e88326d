"""``tools/thick_slices.py``: slices averaged in runs along the acquisition axis, each thick voxel centred on the thin
ones it averages; at factor 1 the thick scan and the control both score what cross-validation scores; thicker, both
are scored against the thin label."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from helpers import load_tool, standin_folds

from atriumseg.pipeline.io.volumes import read_image
from atriumseg.pipeline.training.validation import out_of_fold


@pytest.fixture(scope="module")
def thick_slices() -> ModuleType:
    return load_tool("thick_slices")


def _oblique(spacing: tuple[float, float, float]) -> np.ndarray:
    """A voxel-to-world affine turned 30 degrees about the second world axis, with these voxel sizes, off the origin."""
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]) @ np.diag(spacing)
    affine[:3, 3] = (-40.0, 12.5, 7.0)
    return affine


@pytest.mark.parametrize(("axis", "factor"), [(2, 2), (0, 3), (1, 2)])
def test_thickening_averages_runs_of_slices_each_centred_on_the_slices_it_averages(
    thick_slices: ModuleType, axis: int, factor: int
) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((7, 8, 9)).astype(np.float32)
    affine = _oblique((0.625, 0.7, 1.25))
    thick, thick_affine = thick_slices.thicken(data, affine, factor, axis)
    count = data.shape[axis] // factor  # the remainder dropped
    assert thick.shape[axis] == count and thick.shape[:axis] == data.shape[:axis]
    for j in range(count):
        run = np.take(data, range(j * factor, (j + 1) * factor), axis=axis)
        assert np.allclose(np.take(thick, j, axis=axis), run.mean(axis=axis), atol=1e-6)
        thin_centres = [affine @ np.insert(np.eye(3)[axis] * i, 3, 1.0) for i in range(j * factor, (j + 1) * factor)]
        thick_centre = thick_affine @ np.insert(np.eye(3)[axis] * j, 3, 1.0)
        assert np.allclose(thick_centre, np.mean(thin_centres, axis=0))
    assert np.isclose(np.linalg.norm(thick_affine[:3, axis]), factor * np.linalg.norm(affine[:3, axis]))


@pytest.mark.parametrize(("spacing", "axis"), [((0.625, 0.625, 1.25), 2), ((1.4, 1.25, 1.25), 0),
                                               ((1.0, 1.5, 1.0), 1), ((1.25, 1.25, 1.25), 2)])
def test_the_acquisition_axis_is_the_coarsest_the_last_of_equals(
    thick_slices: ModuleType, spacing: tuple[float, float, float], axis: int
) -> None:
    assert thick_slices.acquisition_axis(_oblique(spacing)) == axis


def test_at_factor_one_the_thick_scan_and_the_control_score_as_cross_validation(
    thick_slices: ModuleType, tmp_path: Path, synthetic_dataset: Path
) -> None:
    folds = standin_folds(tmp_path, synthetic_dataset)
    rows, controls, whole = thick_slices.score(folds, 1, device="cpu")
    expected = sorted(out_of_fold(folds, device="cpu").rows[synthetic_dataset.name])
    assert whole and sorted(rows[synthetic_dataset.name]) == expected == sorted(controls[synthetic_dataset.name])


def test_thicker_slices_are_scored_against_the_thin_label_each_thick_voxel_spread_over_its_slices(
    thick_slices: ModuleType, tmp_path: Path, synthetic_dataset: Path
) -> None:
    """Slices twice as thick: the thick scan's mask and the control are both scored against the thin label (the
    atrium lies within the slices kept, so its volume is the thin one's), each mask in whole thick voxels (two thin
    ones), and the thick scan's mask is its own, not the control's."""
    fold = standin_folds(tmp_path, synthetic_dataset)[1]
    with pytest.raises(ValueError, match="cover folds"):
        thick_slices.score([fold], 2, device="cpu")
    with pytest.raises(ValueError, match="factor must be 1 or more"):
        thick_slices.score([fold], 0, device="cpu", partial=True)
    thin = dict(out_of_fold([fold], device="cpu", partial=True).rows[synthetic_dataset.name])
    rows, controls, whole = thick_slices.score([fold], 2, device="cpu", partial=True)
    assert not whole and sorted(dict(rows[synthetic_dataset.name])) == sorted(thin) == ["case_102", "case_103"]
    for case, metrics in rows[synthetic_dataset.name]:
        control = dict(controls[synthetic_dataset.name])[case]
        assert metrics.true_ml == control.true_ml == pytest.approx(thin[case].true_ml, rel=1e-9)
        affine = read_image(synthetic_dataset / "imagesTr" / f"{case}.nii.gz").tensor.affine.numpy()
        thick_voxel_ml = 2 * abs(np.linalg.det(affine[:3, :3])) / 1000
        for volume in (metrics.predicted_ml, control.predicted_ml):
            assert volume / thick_voxel_ml == pytest.approx(round(volume / thick_voxel_ml), abs=1e-6)
        assert metrics != control
