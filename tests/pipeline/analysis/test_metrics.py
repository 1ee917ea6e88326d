"""Metrics on hand-made masks with known answers, in world units on anisotropic and oblique grids."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from atriumseg.pipeline.analysis.metrics import case_metrics, mask_dice, summarise, volume_error_pct
from atriumseg.pipeline.evaluation.table import summary_line
from atriumseg.synthetic import make_affine, world_coordinates


def _box(shape, lo, hi):
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = 1
    return mask


def _sphere(radius_mm: float, shape, affine) -> np.ndarray:
    centre = world_coordinates(shape, affine).reshape(-1, 3).mean(0) + np.array([0.3, -0.2, 0.1])
    return (np.linalg.norm(world_coordinates(shape, affine) - centre, axis=-1) <= radius_mm).astype(np.uint8)


def test_half_overlapping_cubes_have_dice_one_half() -> None:
    a = _box((40, 40, 40), (10, 10, 10), (20, 20, 20))
    b = _box((40, 40, 40), (15, 10, 10), (25, 20, 20))
    assert case_metrics(a, b, np.diag([1.0, 1.0, 1.0, 1.0])).dice == pytest.approx(0.5)


def test_parallel_plates_have_known_surface_distances_in_mm() -> None:
    """Two 2-voxel plates 4 voxels apart along z at 2.5 mm: distances are 3 or 4 slices, 7.5 or 10 mm."""
    truth = _box((50, 50, 30), (5, 5, 10), (45, 45, 12))
    pred = _box((50, 50, 30), (5, 5, 14), (45, 45, 16))
    m = case_metrics(pred, truth, np.diag([0.7, 0.9, 2.5, 1.0]))
    assert m.dice == 0.0
    assert m.hd95_mm == pytest.approx(10.0)
    assert m.asd_mm == pytest.approx(8.75)


def test_volume_in_millilitres_uses_the_voxel_size() -> None:
    mask = _box((30, 30, 40), (0, 5, 2), (10, 25, 32))
    m = case_metrics(mask, mask, np.diag([0.8, 1.25, 2.0, 1.0]))
    assert m.predicted_ml == pytest.approx(12.0) and m.true_ml == pytest.approx(12.0)
    assert m.dice == 1.0 and m.hd95_mm == 0.0 and m.volume_error_pct == 0.0


SPHERES = [(13.0, 100 * ((13 / 12) ** 3 - 1)), (11.0, 100 * ((11 / 12) ** 3 - 1))]


@pytest.mark.parametrize(("pred_mm", "expected_pct"), SPHERES)
def test_volume_error_of_spheres_matches_their_analytic_volumes(pred_mm: float, expected_pct: float) -> None:
    """Spheres of 12 mm (7.24 mL) and 13 or 11 mm radius on an oblique anisotropic grid: +27.1% and -23.0%."""
    shape = (70, 60, 45)
    affine = make_affine(shape, (0.5, 0.6, 0.8), "LPS", (10, -15, 20))
    truth, pred = _sphere(12.0, shape, affine), _sphere(pred_mm, shape, affine)
    m = case_metrics(pred, truth, affine)
    assert m.true_ml == pytest.approx(4 / 3 * math.pi * 12.0**3 / 1000, rel=0.01)
    assert m.predicted_ml == pytest.approx(4 / 3 * math.pi * pred_mm**3 / 1000, rel=0.01)
    assert m.volume_error_pct == pytest.approx(expected_pct, abs=1.0)
    assert m.volume_error_pct == pytest.approx(100 * (int(pred.sum()) - int(truth.sum())) / int(truth.sum()))
    assert m.abs_volume_error_pct == pytest.approx(abs(m.volume_error_pct))


def test_volume_errors_and_their_means_are_exact_on_boxes() -> None:
    """10x10x12 against 10x10x10 voxels is +20% exactly, the other way round -16.67%; means leave NaN out."""
    shape, affine = (20, 20, 20), np.diag([0.9, 1.1, 1.7, 1.0])
    small, large = _box(shape, (2, 2, 2), (12, 12, 12)), _box(shape, (2, 2, 2), (12, 12, 14))
    over, under = case_metrics(large, small, affine), case_metrics(small, large, affine)
    assert over.volume_error_pct == pytest.approx(20.0) and over.abs_volume_error_pct == pytest.approx(20.0)
    assert under.volume_error_pct == pytest.approx(-100 / 6) and under.abs_volume_error_pct == pytest.approx(100 / 6)
    no_reference = case_metrics(small, np.zeros(shape, np.uint8), affine)
    assert math.isnan(no_reference.volume_error_pct) and math.isnan(no_reference.abs_volume_error_pct)
    s = summarise([("over", over), ("under", under), ("empty", no_reference)])
    assert s.volume_error_mean_pct == pytest.approx((20 - 100 / 6) / 2)
    assert s.abs_volume_error_mean_pct == pytest.approx((20 + 100 / 6) / 2)


def test_volume_error_formula() -> None:
    assert volume_error_pct(90.0, 100.0) == pytest.approx(-10.0) and math.isnan(volume_error_pct(5.0, 0.0))


def test_empty_prediction_has_zero_dice_and_no_distance() -> None:
    truth = _box((20, 20, 20), (5, 5, 5), (10, 10, 10))
    m = case_metrics(np.zeros_like(truth), truth, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert m.dice == 0.0 and math.isnan(m.hd95_mm) and m.predicted_ml == 0.0 and m.volume_error_pct == -100.0


def test_surface_distances_raise_no_future_warning() -> None:
    a, b = _box((20, 20, 20), (5, 5, 5), (10, 10, 10)), _box((20, 20, 20), (6, 5, 5), (11, 10, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = case_metrics(a, b, np.eye(4))
    assert m.hd95_mm == pytest.approx(1.0)


def test_summary_names_the_worst_case() -> None:
    cube = _box((9, 9, 9), (2, 2, 2), (6, 6, 6))
    good = case_metrics(cube, cube, np.eye(4))
    bad = case_metrics(cube, _box((9, 9, 9), (4, 2, 2), (8, 6, 6)), np.eye(4))
    s = summarise([("a", good), ("b", bad), ("c", good)])
    assert s.worst_case == "b" and s.dice_worst == pytest.approx(0.5) and s.dice_median == 1.0
    with pytest.raises(ValueError, match="no evaluated case"):
        summarise([])


def test_distance_means_say_how_many_cases_they_cover() -> None:
    cube = _box((9, 9, 9), (2, 2, 2), (6, 6, 6))
    rows = [("a", case_metrics(cube, cube, np.eye(4))), ("missed", case_metrics(np.zeros_like(cube), cube, np.eye(4)))]
    s = summarise(rows)
    assert (s.cases, s.distance_cases, s.hd95_mean_mm) == (2, 1, 0.0)  # the missed case has no distance to average
    assert "HD95 mean 0.00 mm; ASD mean 0.00 mm over 1 cases (the others have an empty mask)" in summary_line(s)
    assert "over" not in summary_line(summarise(rows[:1]))


def test_mask_dice_is_case_metrics_dice_without_the_distances() -> None:
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[2:6, 2:6, 2:6], b[3:7, 2:6, 2:6] = True, True  # 48 of 64 voxels shared
    assert mask_dice(a, b) == pytest.approx(2 * 48 / 128)
    assert mask_dice(a, b) == pytest.approx(case_metrics(a, b, np.eye(4)).dice)
    assert mask_dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
