"""Axis codes and voxel sizes from affines: the torch-free bottom layer every part of the package reads."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from atriumseg.geometry import AXIS_UNIT, affine_with_axcodes, validate_axcodes, voxel_spacing


def test_affine_with_axcodes_keeps_voxel_size_and_origin() -> None:
    affine = np.diag([1.25, 1.25, 1.37, 1.0])
    affine[:3, 3] = [40.0, 40.0, 0.0]
    fixed = affine_with_axcodes(affine, "asl")
    assert nib.aff2axcodes(fixed) == ("A", "S", "L")
    assert np.allclose(voxel_spacing(fixed), [1.25, 1.25, 1.37])
    assert np.allclose(fixed[:3, 3], [40.0, 40.0, 0.0])


@pytest.mark.parametrize("codes", ["RAS", "LPS", "ASL", "PIR", "SLA", "ILP"])
def test_affine_with_axcodes_points_each_axis_along_its_code(codes: str) -> None:
    fixed = affine_with_axcodes(np.diag([0.7, 2.0, 3.5, 1.0]), codes)
    assert nib.aff2axcodes(fixed) == tuple(codes)
    for column, code, size in zip(fixed[:3, :3].T, codes, (0.7, 2.0, 3.5), strict=True):
        assert np.allclose(column, np.asarray(AXIS_UNIT[code]) * size)


@pytest.mark.parametrize("codes", ["RA", "RRS", "XYZ", "RASL", "LRS"])
def test_invalid_axis_codes_are_refused_with_the_rule(codes: str) -> None:
    with pytest.raises(ValueError, match="L/R, A/P and S/I"):
        validate_axcodes(codes)


def test_axis_codes_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="string of three axis codes"):
        validate_axcodes(None)  # type: ignore[arg-type]


def test_axis_codes_are_upper_cased() -> None:
    assert validate_axcodes("lps") == "LPS"


@pytest.mark.parametrize(
    ("spacing", "euler"),
    [((1.0, 1.0, 1.0), (0, 0, 0)), ((0.625, 0.625, 2.5), (30, -20, 75)), ((1.37, 0.9, 4.0), (180, 0, 90))],
)
def test_voxel_spacing_of_rotated_and_flipped_affines(spacing: tuple[float, ...], euler: tuple[float, ...]) -> None:
    affine = np.eye(4)
    flip = np.diag([-1.0, 1.0, -1.0])
    affine[:3, :3] = Rotation.from_euler("xyz", euler, degrees=True).as_matrix() @ np.diag(spacing) @ flip
    affine[:3, 3] = [12.0, -8.0, 100.0]
    assert np.allclose(voxel_spacing(affine), spacing)
    assert np.allclose(voxel_spacing(affine[:3, :3]), spacing)
    assert all(isinstance(s, float) for s in voxel_spacing(affine))
