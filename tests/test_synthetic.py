"""Synthetic volumes: the anatomy lives in world space, so one seed is one patient on any grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from atriumseg.geometry import voxel_spacing
from atriumseg.synthetic import make_affine, synthetic_case, world_coordinates


@pytest.mark.parametrize(("codes", "spacing", "rotation"),
                         [("RAS", (1.5, 1.5, 1.5), (0, 0, 0)), ("LPS", (1.2, 1.0, 2.0), (0, 0, 0)),
                          ("ASL", (1.0, 1.4, 1.1), (10, -20, 15))])
def test_make_affine_points_the_axes_and_centres_the_volume(codes: str, spacing, rotation) -> None:
    shape = (20, 22, 18)
    affine = make_affine(shape, spacing, codes, rotation, center=(5.0, -3.0, 8.0))
    assert np.allclose(voxel_spacing(affine), spacing)
    if rotation == (0, 0, 0):
        assert nib.aff2axcodes(affine) == tuple(codes)
    assert np.allclose(world_coordinates(shape, affine).reshape(-1, 3).mean(0), (5.0, -3.0, 8.0), atol=1e-3)


def test_one_seed_is_one_atrium_whatever_the_grid() -> None:
    shape_a, shape_b = (48, 48, 40), (60, 40, 32)
    a = synthetic_case(shape_a, make_affine(shape_a, (1.5, 1.5, 1.5)), seed=3)
    b = synthetic_case(shape_b, make_affine(shape_b, (1.2, 1.8, 1.9), "PIR", (5, 10, -5)), seed=3)
    volume = [case.label.sum() * abs(np.linalg.det(case.affine[:3, :3])) for case in (a, b)]
    assert volume[1] == pytest.approx(volume[0], rel=0.05), volume
    centroid = [world_coordinates(c.label.shape, c.affine)[c.label > 0].mean(0) for c in (a, b)]
    assert np.linalg.norm(centroid[0] - centroid[1]) < 1.0
    other = synthetic_case(shape_a, make_affine(shape_a, (1.5, 1.5, 1.5)), seed=4)
    assert not np.array_equal(other.label, a.label)


def test_the_atrium_is_the_brightest_structure_at_any_intensity_scale() -> None:
    case = synthetic_case(scale=3000.0, seed=1)
    atrium, rest = case.image[case.label > 0], case.image[case.label == 0]
    assert np.median(atrium) > 1.3 * np.percentile(rest, 95) and case.image.max() > 1000.0
    assert np.array_equal(synthetic_case(seed=1).label, case.label)
