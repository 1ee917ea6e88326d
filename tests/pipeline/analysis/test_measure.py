"""Measurements are in world units: the same ellipsoid gives its analytic values on any voxel grid."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import CENTRE, ELLIPSOID_GRIDS, SEMI_AXES, ellipsoid_mask, write_itk, write_nifti

from atriumseg.pipeline.analysis.measure import CSV_COLUMNS, measure, measure_file, write_measurements_csv
from atriumseg.pipeline.io.volumes import ImageReadError
from atriumseg.synthetic import make_affine

THOMSEN_P = 1.6075
A, B, C = SEMI_AXES
VOLUME_MM3 = 4 / 3 * math.pi * A * B * C
AREA_MM2 = 4 * math.pi * (((A * B) ** THOMSEN_P + (A * C) ** THOMSEN_P + (B * C) ** THOMSEN_P) / 3) ** (1 / THOMSEN_P)
ANALYTIC = {
    "volume_ml": VOLUME_MM3 / 1000,
    "surface_area_mm2": AREA_MM2,
    "sphericity": math.pi ** (1 / 3) * (6 * VOLUME_MM3) ** (2 / 3) / AREA_MM2,
    "axis_1_mm": 2 * A,
    "axis_2_mm": 2 * B,
    "axis_3_mm": 2 * C,
}
MAX_RELATIVE_ERROR = 0.02

GRIDS = ELLIPSOID_GRIDS


@pytest.mark.parametrize(("grid_id", "spacing", "codes", "rotation"), GRIDS, ids=[g[0] for g in GRIDS])
def test_ellipsoid_measurements_match_the_analytic_values(grid_id, spacing, codes, rotation) -> None:
    m = measure(*ellipsoid_mask(spacing, codes, rotation))
    measured = m.row()
    errors = {name: measured[name] / value - 1 for name, value in ANALYTIC.items()}
    report = ", ".join(f"{name} {measured[name]:.4g} ({err:+.2%})" for name, err in errors.items())
    assert all(abs(err) < MAX_RELATIVE_ERROR for err in errors.values()), f"{grid_id}: {report}"
    offset = float(np.linalg.norm(np.subtract(m.centroid_ras_mm, CENTRE)))
    assert offset < 1.0, f"{grid_id}: centroid {m.centroid_ras_mm} is {offset:.2f} mm from {CENTRE}"


# (voxel size in mm, axis codes, grid rotation in degrees, box size in voxels)
BOXES = [
    ((1.0, 1.0, 1.0), "RAS", (0, 0, 0), (4, 6, 9)),
    ((0.8, 1.1, 2.0), "LAS", (0, 0, 0), (11, 3, 5)),
    ((1.3, 0.7, 1.9), "PIR", (30, -10, 45), (7, 8, 2)),
]


@pytest.mark.parametrize(("spacing", "codes", "rotation", "size"), BOXES)
def test_box_volume_centroid_and_axes_are_exact(spacing, codes, rotation, size) -> None:
    shape = (15, 12, 11)
    affine = make_affine(shape, spacing, codes, rotation, (10.0, -20.0, 30.0))
    mask = np.zeros(shape, np.uint8)
    mask[2 : 2 + size[0], 3 : 3 + size[1], 1 : 1 + size[2]] = 1
    m = measure(mask, affine)
    assert m.volume_ml == pytest.approx(np.prod(size) * np.prod(spacing) / 1000, rel=1e-12)
    centre_ijk = np.array([2, 3, 1]) + (np.array(size) - 1) / 2
    np.testing.assert_allclose(m.centroid_ras_mm, affine[:3, :3] @ centre_ijk + affine[:3, 3], atol=1e-9)
    # Voxel centres along an edge of n voxels of size s have variance s² (n² - 1) / 12.
    variances = np.square(spacing) * (np.square(size) - 1) / 12
    np.testing.assert_allclose(m.axis_lengths_mm, sorted(np.sqrt(20 * variances), reverse=True), rtol=1e-9)
    assert 0 < m.sphericity < 1


def test_single_voxel_has_a_surface_and_no_extent() -> None:
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 2, 3] = 1
    affine = make_affine(mask.shape, (0.8, 1.1, 2.0), "LPS")
    m = measure(mask, affine)
    assert m.volume_ml == pytest.approx(0.8 * 1.1 * 2.0 / 1000)
    assert m.surface_area_mm2 > 0 and m.axis_lengths_mm == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(m.centroid_ras_mm, affine[:3, :3] @ [1, 2, 3] + affine[:3, 3], atol=1e-12)


def test_empty_mask_has_zero_size_and_undefined_shape_and_position() -> None:
    m = measure(np.zeros((5, 6, 7), np.uint8), make_affine((5, 6, 7), (0.8, 1.1, 2.0), "LAS"))
    assert (m.volume_ml, m.surface_area_mm2, m.axis_lengths_mm) == (0.0, 0.0, (0.0, 0.0, 0.0))
    assert math.isnan(m.sphericity) and all(math.isnan(v) for v in m.centroid_ras_mm)


@pytest.mark.parametrize(
    ("shape", "affine", "match"),
    [
        ((5, 6), np.eye(4), "3D array"),
        ((1, 5, 6, 7), np.eye(4), "3D array"),
        ((5, 6, 7), np.eye(3), "4x4"),
        ((5, 6, 7), np.diag([1.0, 0.0, 1.0, 1.0]), "invertible"),
        ((5, 6, 7), np.full((4, 4), np.nan), "invertible"),
    ],
)
def test_bad_mask_or_affine_is_refused_with_the_reason(shape, affine, match) -> None:
    with pytest.raises(ValueError, match=match):
        measure(np.ones(shape, np.uint8), affine)


@pytest.mark.parametrize(("suffix", "write"), [(".nii.gz", write_nifti), (".nrrd", write_itk), (".mha", write_itk)])
def test_measure_file_equals_measure_of_the_array(tmp_path: Path, suffix, write) -> None:
    mask, affine = ellipsoid_mask((1.6, 2.2, 4.0), "LAS", (0, 8, 0))
    path = write(tmp_path / f"atrium{suffix}", mask, affine)
    from_file, from_array = measure_file(path).row(), measure(mask, affine).row()
    for name, value in from_array.items():
        assert from_file[name] == pytest.approx(value, rel=1e-5, abs=1e-4), f"{suffix} {name}"


@pytest.mark.parametrize("label", [1, 255])
def test_a_file_that_is_not_a_mask_is_refused_and_any_one_label_is_measured(tmp_path: Path, label: int) -> None:
    mask, affine = ellipsoid_mask((1.6, 2.2, 4.0), "LAS", (0, 8, 0))
    expected = measure(mask, affine).volume_ml
    assert measure_file(write_nifti(tmp_path / "m.nii.gz", mask * label, affine)).volume_ml == pytest.approx(expected)
    nan_background = np.where(mask > 0, float(label), np.nan).astype(np.float32)
    assert measure_file(write_nifti(tmp_path / "n.nii.gz", nan_background, affine)).volume_ml == pytest.approx(expected)
    probabilities = mask * 0.9 + 0.05 * (mask == 0)  # a probability map: every voxel above 0
    with pytest.raises(ImageReadError, match=r"p.nii.gz: not a mask: besides 0 and 0.9 it holds [\d,]+ voxels"):
        measure_file(write_nifti(tmp_path / "p.nii.gz", probabilities.astype(np.float32), affine))
    with pytest.raises(ValueError, match=r"^not a mask: besides 0 and 0.9 it holds [\d,]+ voxels"):  # arrays too
        measure(probabilities, affine)


def test_csv_holds_every_measurement_at_full_precision(tmp_path: Path) -> None:
    rows = [
        ("case_a", measure(*ellipsoid_mask((2.0, 2.0, 2.0), "RAS", (0, 0, 0)))),
        ("case_empty", measure(np.zeros((4, 4, 4), np.uint8), np.eye(4))),
    ]
    path = write_measurements_csv(rows, tmp_path / "out" / "measurements.csv")
    with path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == CSV_COLUMNS
    assert [r["case"] for r in read] == ["case_a", "case_empty"]
    for (_, m), line in zip(rows, read, strict=True):
        for name, value in m.row().items():
            assert float(line[name]) == value or (math.isnan(value) and math.isnan(float(line[name]))), name
    assert sorted(p.name for p in path.parent.iterdir()) == ["measurements.csv"]


def test_csv_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "measurements.csv"
    path.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_measurements_csv([], path)
    assert path.read_text() == "keep me\n"
    write_measurements_csv([], path, overwrite=True)
    assert path.read_text() == ",".join(CSV_COLUMNS) + "\n"
