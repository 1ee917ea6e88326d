"""Evaluation metrics on hand-made masks with known answers, in world units on anisotropic grids."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import write_nifti

from atriumseg.cli import EXIT_OK, main
from atriumseg.pipeline.analysis.metrics import case_metrics, summarise
from atriumseg.synthetic import make_affine, synthetic_case


def _box(shape, lo, hi):
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    return mask


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
    assert m.dice == 1.0 and m.hd95_mm == 0.0


def test_empty_prediction_has_zero_dice_and_no_distance() -> None:
    truth = _box((20, 20, 20), (5, 5, 5), (10, 10, 10))
    m = case_metrics(np.zeros_like(truth), truth, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert m.dice == 0.0 and math.isnan(m.hd95_mm) and m.predicted_ml == 0.0


def test_summary_names_the_worst_case() -> None:
    cube = _box((9, 9, 9), (2, 2, 2), (6, 6, 6))
    good = case_metrics(cube, cube, np.eye(4))
    bad = case_metrics(cube, _box((9, 9, 9), (4, 2, 2), (8, 6, 6)), np.eye(4))
    s = summarise([("a", good), ("b", bad), ("c", good)])
    assert s.worst_case == "b" and s.dice_worst == pytest.approx(0.5) and s.dice_median == 1.0


def test_evaluate_command_writes_csv_and_summary(tmp_path: Path, model_folder: Path, capsys) -> None:
    for name, seed in [("p1", 41), ("p2", 42)]:
        shape = (44, 40, 36)
        case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=seed)
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "lab").mkdir(exist_ok=True)
        write_nifti(tmp_path / "img" / f"{name}.nii.gz", case.image, case.affine)
        write_nifti(tmp_path / "lab" / f"{name}.nii.gz", case.label, case.affine)
    out = tmp_path / "eval.csv"
    code = main(["evaluate", str(tmp_path / "img"), str(tmp_path / "lab"), "--model", str(model_folder),
                 "--output", str(out), "--quiet"])
    assert code == EXIT_OK
    rows = list(csv.DictReader(out.open()))
    assert [r["case"] for r in rows] == ["p1", "p2"]
    assert all(float(r["dice"]) > 0.8 for r in rows), rows
    assert "Dice mean" in capsys.readouterr().out
