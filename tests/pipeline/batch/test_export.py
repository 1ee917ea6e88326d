"""DICOM in, DICOM out from the command line: a SEG on the series' grid equal to the NIfTI mask, study
identifiers and the LA volume index in the report, ``--patients`` and ``--anonymous``."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import SERIES_GRID, SERIES_UID, placed_frames, write_nifti, write_series

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_OK, main
from atriumseg.synthetic import make_affine, synthetic_case

SAGITTAL = ((0, 1, 0), (0, 0, -1))  # LPS row and column cosines
SAGITTAL_NEGATED_COLUMN = ((0, 1, 0), (0, 0, 1))
BSA_175_CM_70_KG = 1.8447  # sqrt(175 * 70 / 3600)
IDENTIFIERS = ("patient_id", "study_uid", "series_uid", "accession_number", "series_description")


def segment(inputs: list[Path], out: Path, model: Path, *options: str) -> int:
    return main(["segment", *map(str, inputs), "--output", str(out), "--model", str(model), "--quiet", *options])


def report_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "report.csv", newline="", encoding="utf-8") as fh:
        return {row["case"]: row for row in csv.DictReader(fh)}


def seg_on_grid(seg: pydicom.Dataset, affine: np.ndarray) -> np.ndarray:
    """The SEG's frames placed by their own position and orientation on the voxel grid of ``affine``."""
    placed = np.zeros(SERIES_GRID, np.uint8)
    to_voxel = np.linalg.inv(affine)
    for lps, pixels in placed_frames(seg):
        ijk = (lps * np.array([-1.0, -1.0, 1.0])) @ to_voxel[:3, :3].T + to_voxel[:3, 3]
        index = np.round(ijk).astype(int)
        assert np.abs(ijk - index).max() < 1e-3, "a SEG frame is off the series' grid"
        placed[index[..., 0], index[..., 1], index[..., 2]] = pixels
    return placed


@pytest.mark.parametrize(("row", "column"), [SAGITTAL, SAGITTAL_NEGATED_COLUMN], ids=["sagittal", "negated-column"])
def test_dicom_seg_equals_the_nifti_mask_and_the_report_has_uids_bsa_and_lavi(
    tmp_path: Path, model_folder: Path, row, column
) -> None:
    folder = write_series(tmp_path / "study", row, column)
    assert segment([folder], tmp_path / "nii", model_folder) == EXIT_OK
    assert segment([folder], tmp_path / "seg", model_folder, "--format", "dicom-seg") == EXIT_OK

    nifti = nib.load(tmp_path / "nii" / "study.nii.gz")
    expected = np.asarray(nifti.dataobj)
    path = tmp_path / "seg" / "study.seg.dcm"
    placed = seg_on_grid(hd.seg.segread(path), nifti.affine)
    assert expected.sum() > 300, f"only {expected.sum()} atrium voxels; the test needs a real shape"
    assert int((placed != expected).sum()) == 0
    assert not (tmp_path / "seg" / "study.nii.gz").exists()

    source = pydicom.dcmread(folder / "slice_000.dcm", stop_before_pixels=True)
    case = report_rows(tmp_path / "seg")["study"]
    assert (case["status"], case["output"]) == ("ok", str(path))
    assert {k: case[k] for k in IDENTIFIERS} == {
        "patient_id": "PAT-0042", "study_uid": source.StudyInstanceUID, "series_uid": SERIES_UID,
        "accession_number": "ACC-7", "series_description": "cine sax",
    }
    assert (float(case["height_cm"]), float(case["weight_kg"])) == (175.0, 70.0)
    assert float(case["bsa_m2"]) == BSA_175_CM_70_KG
    assert float(case["lavi_ml_m2"]) == pytest.approx(float(case["volume_ml"]) / BSA_175_CM_70_KG, abs=2e-4)
    voxel_ml = float(np.prod(nifti.header.get_zooms())) / 1000.0
    assert float(case["volume_ml"]) == pytest.approx(expected.sum() * voxel_ml, abs=1e-4)

    # a rerun keeps the complete case and its SEG untouched
    before = path.read_bytes()
    assert segment([folder], tmp_path / "seg", model_folder, "--format", "dicom-seg") == EXIT_OK
    assert path.read_bytes() == before


def test_dicom_seg_of_a_non_dicom_input_fails_with_the_reason(tmp_path: Path, model_folder: Path) -> None:
    shape = (40, 42, 30)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=7)
    (tmp_path / "in").mkdir()
    image = write_nifti(tmp_path / "in" / "good.nii.gz", case.image, case.affine)
    out = tmp_path / "out"
    assert segment([image], out, model_folder, "--format", "dicom-seg") == EXIT_CASE_FAILED
    row = report_rows(out)["good"]
    assert row["status"] == "failed"
    assert row["reason"] == f"{image}: dicom-seg needs a DICOM series input; use --format nii.gz or same"
    assert sorted(p.name for p in out.iterdir()) == [".atriumseg", "report.csv", "report.json"]
    assert all(row[k] == "" for k in (*IDENTIFIERS, "bsa_m2", "lavi_ml_m2"))


def test_patients_csv_overrides_the_dicom_tags_and_an_absurd_height_leaves_lavi_empty(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [write_series(tmp_path / "in" / name, *SAGITTAL) for name in ("a", "b", "c")]
    patients = tmp_path / "patients.csv"
    patients.write_text("case,height_cm,weight_kg\na,180,81\nb,17.5,70\n")
    with caplog.at_level(logging.INFO):
        assert segment(inputs, tmp_path / "out", model_folder, "--patients", str(patients)) == EXIT_OK
    rows = report_rows(tmp_path / "out")
    assert (rows["a"]["height_cm"], rows["a"]["weight_kg"], rows["a"]["bsa_m2"]) == ("180.0", "81.0", "2.0125")
    assert float(rows["a"]["lavi_ml_m2"]) == pytest.approx(float(rows["a"]["volume_ml"]) / 2.0125, abs=2e-4)
    assert all(rows["b"][k] == "" for k in ("height_cm", "weight_kg", "bsa_m2", "lavi_ml_m2"))
    reasons = [r.getMessage() for r in caplog.records if r.getMessage().startswith("b: no BSA or LAVI")]
    assert len(reasons) == 1 and "height 17.5 cm is outside the plausible 50-250 cm" in reasons[0]
    assert float(rows["c"]["bsa_m2"]) == BSA_175_CM_70_KG  # not listed: its DICOM tags


def test_anonymous_leaves_the_identifiers_out_but_keeps_the_volume_index(tmp_path: Path, model_folder: Path) -> None:
    folder = write_series(tmp_path / "study", *SAGITTAL)
    assert segment([folder], tmp_path / "out", model_folder, "--anonymous") == EXIT_OK
    row = report_rows(tmp_path / "out")["study"]
    assert all(row[k] == "" for k in IDENTIFIERS)
    assert float(row["bsa_m2"]) == BSA_175_CM_70_KG
    cases = json.loads((tmp_path / "out" / "report.json").read_text())["cases"]
    assert all(cases[0][k] == "" for k in IDENTIFIERS)
