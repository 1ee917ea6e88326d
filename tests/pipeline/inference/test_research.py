"""Research features: probability maps with the input's geometry, TTA uncertainty, measurements and meshes
from the API and the command line, and the measurement columns of the batch report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import dice, write_nifti

import atriumseg
from atriumseg.cli import EXIT_OK, main
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (44, 46, 36)


def _case(seed: int, noise: float = 0.04):
    return synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 12, 0)), seed=seed, noise=noise)


def test_probability_map_has_the_input_geometry_and_agrees_with_the_mask(
    tmp_path: Path, model_folder: Path
) -> None:
    case = _case(90)
    (tmp_path / "in").mkdir()
    src = write_nifti(tmp_path / "in" / "p90.nii.gz", case.image, case.affine)
    out = tmp_path / "out"
    args = ["segment", str(src), "--output", str(out), "--model", str(model_folder), "--probabilities", "--quiet",
            "--mesh", "vtk", "--mesh-frame", "LPS"]
    assert main(args) == EXIT_OK
    prob = nib.load(out / "p90_probabilities.nii.gz")
    mask = np.asanyarray(nib.load(out / "p90.nii.gz").dataobj)
    assert prob.shape == SHAPE and np.allclose(prob.affine, case.affine, atol=1e-6)
    data = prob.get_fdata()
    assert prob.get_data_dtype() == np.float32 and 0.0 <= data.min() and data.max() <= 1.0
    assert dice(data > 0.5, mask) > 0.95
    assert (out / "p90.vtk").read_text().splitlines()[1].endswith("SPACE=LPS")
    row = json.loads((out / "report.json").read_text())["cases"][0]
    assert row["surface_area_mm2"] > 0 and 0.5 < row["sphericity"] <= 1.0
    centroid_lps = np.array([-row["centroid_r_mm"], -row["centroid_a_mm"], row["centroid_s_mm"]])
    vertices = np.array([list(map(float, line.split())) for line in (out / "p90.vtk").read_text().splitlines()[5:50]])
    assert np.all(np.linalg.norm(vertices - centroid_lps, axis=1) < 40)


def test_batch_report_has_uncertainty_only_with_tta(tmp_path: Path, model_folder: Path) -> None:
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "p93.nii.gz", _case(93).image, _case(93).affine)
    for flag, out in ((["--tta"], tmp_path / "tta"), ([], tmp_path / "plain")):
        assert main(["segment", str(tmp_path / "in"), "-o", str(out), "-m", str(model_folder), "--quiet", *flag]) == 0
    with_tta = list(csv.DictReader((tmp_path / "tta" / "report.csv").open()))[0]
    without = list(csv.DictReader((tmp_path / "plain" / "report.csv").open()))[0]
    assert 0.0 <= float(with_tta["uncertainty"]) <= 1.0 and without["uncertainty"] == ""
    assert float(with_tta["volume_ml"]) == pytest.approx(float(without["volume_ml"]), rel=0.15)


def test_measure_api_and_command_agree_across_grids(tmp_path: Path, capsys) -> None:
    a = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS"), seed=94)
    b = synthetic_case((60, 40, 30), make_affine((60, 40, 30), (1.1, 1.6, 2.2), "PIR", (10, 0, 5)), seed=94)
    paths = [write_nifti(tmp_path / f"{n}.nii.gz", c.label, c.affine) for n, c in (("a", a), ("b", b))]
    ma, mb = atriumseg.measure(paths[0]), atriumseg.measure(b.label, b.affine)
    assert ma.volume_ml == pytest.approx(mb.volume_ml, rel=0.05)
    assert np.allclose(ma.centroid_ras_mm, mb.centroid_ras_mm, atol=1.5)
    assert main(["measure", *map(str, paths), "--output", str(tmp_path / "m.csv")]) == EXIT_OK
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [r["case"] for r in rows] == ["a", "b"]
    assert float(rows[0]["volume_ml"]) == pytest.approx(ma.volume_ml)
    assert "mL" in capsys.readouterr().out


def test_mesh_api_accepts_segment_outputs(segmenter: Segmenter) -> None:
    case = _case(95)
    mask = atriumseg.segment(nib.Nifti1Image(case.image, case.affine), segmenter)
    surface = atriumseg.mesh(mask, frame="RAS")
    centre = surface.vertices.mean(0)
    assert np.allclose(centre, atriumseg.measure(mask).centroid_ras_mm, atol=2.0)


def test_declared_orientation_drives_measurements_but_not_the_mask_header(tmp_path: Path, model_folder: Path) -> None:
    """A file whose header lies (MSD Task02 style) measured with --assume-orientation matches its truthful twin."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS"), seed=96)
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt("ASL"))
    stored = apply_orientation(case.image, transform)
    true_affine = case.affine @ inv_ornt_aff(transform, SHAPE)
    lying_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    lying_affine[:3, 3] = true_affine[:3, 3]
    (tmp_path / "lying").mkdir()
    (tmp_path / "true").mkdir()
    write_nifti(tmp_path / "lying" / "p.nii.gz", stored, lying_affine)
    write_nifti(tmp_path / "true" / "p.nii.gz", stored, true_affine)
    common = ["--model", str(model_folder), "--quiet"]
    lying = ["segment", str(tmp_path / "lying"), "-o", str(tmp_path / "o1"), "--assume-orientation", "ASL"]
    assert main([*lying, *common]) == 0
    assert main(["segment", str(tmp_path / "true"), "-o", str(tmp_path / "o2"), *common]) == 0
    fixed, truthful = (json.loads((tmp_path / o / "report.json").read_text())["cases"][0] for o in ("o1", "o2"))
    for column in ("volume_ml", "centroid_r_mm", "centroid_a_mm", "centroid_s_mm", "axis_1_mm"):
        assert fixed[column] == pytest.approx(truthful[column], abs=1e-3), column
    assert np.allclose(nib.load(tmp_path / "o1" / "p.nii.gz").affine, lying_affine)
