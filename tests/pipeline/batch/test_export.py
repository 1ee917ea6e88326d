"""Writing a case's outputs: the record that says "interrupted" before any output, the surface meshed once for
the mesh file and the measurements, and DICOM in, DICOM out: a SEG on the series' grid equal to the NIfTI mask,
with the study identifiers and the LA volume index in the report."""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import SERIES_UID, report_rows, seg_on_grid, write_nifti, write_series
from helpers import segment_cli as segment

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_OK
from atriumseg.pipeline.analysis import measure as measure_module
from atriumseg.pipeline.analysis import mesh as mesh_module
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.report import INTERRUPTED, read_record
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.io import writing
from atriumseg.pipeline.io.volumes import read_image
from atriumseg.synthetic import make_affine, synthetic_case

SAGITTAL = ((0, 1, 0), (0, 0, -1))  # LPS row and column cosines
SAGITTAL_NEGATED_COLUMN = ((0, 1, 0), (0, 0, 1))
BSA_175_CM_70_KG = 1.8447  # sqrt(175 * 70 / 3600)
IDENTIFIERS = ("patient_id", "study_uid", "series_uid", "accession_number", "series_description")


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


def test_a_seg_kept_beside_its_series_is_not_taken_for_a_series(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As Slicer wants them, the SEG copied into the study folder: the folder is still one case, named after it,
    finished by the first run (no second SEG), and its volume reads as before. highdicom's INFO lines stay out of
    the log."""
    folder = write_series(tmp_path / "study", *SAGITTAL)
    with caplog.at_level(logging.INFO):
        assert segment([folder], tmp_path / "seg", model_folder, "--format", "dicom-seg") == EXIT_OK
    assert not [r for r in caplog.records if r.name.startswith("highdicom")]
    (folder / "study.seg.dcm").write_bytes((tmp_path / "seg" / "study.seg.dcm").read_bytes())
    assert segment([folder], tmp_path / "seg", model_folder, "--format", "dicom-seg") == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "seg").glob("*.dcm")) == ["study.seg.dcm"]
    assert list(report_rows(tmp_path / "seg")) == ["study"]
    assert read_image(folder).tensor.shape[1:] == read_image(folder, SERIES_UID).tensor.shape[1:]


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


def _case_file(folder: Path, name: str = "p7") -> Path:
    shape = (36, 38, 24)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "RAS", (5, 0, 0)), seed=7)
    folder.mkdir(parents=True, exist_ok=True)
    return write_nifti(folder / f"{name}.nii.gz", case.image, case.affine)


def test_the_record_says_interrupted_while_the_outputs_are_written(tmp_path: Path, segmenter, monkeypatch) -> None:
    source, out, seen = _case_file(tmp_path / "in"), tmp_path / "out", []
    real_save = writing.save_nifti

    def save(image, path, gzip):
        seen.append(read_record(out, "p7"))
        real_save(image, path, gzip)

    monkeypatch.setattr(writing, "save_nifti", save)
    run_batch(segmenter, [source], BatchOptions(output=out, show_progress=False, mesh="stl"))
    (during,) = seen
    assert (during.status, during.reason) == ("failed", INTERRUPTED)
    assert during.output == str(out.absolute() / "p7.nii.gz")
    assert during.extra_outputs == (str(out.absolute() / "p7.stl"),)
    final = read_record(out, "p7")
    assert final.status == "ok" and final.reason == "" and Path(final.extra_outputs[0]).is_file()


@pytest.mark.parametrize("mesh_format", [None, "obj"])
def test_the_surface_is_meshed_once(tmp_path: Path, segmenter, monkeypatch, mesh_format) -> None:
    calls = []
    real = mesh_module.mesh

    def counting(*args, **kwargs):
        calls.append(kwargs.get("frame", "RAS"))
        return real(*args, **kwargs)

    monkeypatch.setattr(mesh_module, "mesh", counting)
    monkeypatch.setattr(measure_module, "mesh", counting)
    source = _case_file(tmp_path / "in")
    options = BatchOptions(output=tmp_path / "out", show_progress=False, mesh=mesh_format, mesh_frame="LPS")
    (result,) = run_batch(segmenter, [source], options).results
    assert len(calls) == 1, calls
    volume = read_image(source)
    expected = measure_module.measure(np.asarray(nib.load(result.output).dataobj), volume.tensor.affine.numpy())
    assert result.surface_area_mm2 == pytest.approx(expected.surface_area_mm2, rel=1e-9)
    assert result.volume_ml == pytest.approx(expected.volume_ml, rel=1e-12)


def test_a_redo_names_the_earlier_outputs_it_does_not_write_and_keeps_them(
    tmp_path: Path, segmenter, caplog: pytest.LogCaptureFixture
) -> None:
    source, out = _case_file(tmp_path / "in"), tmp_path / "out"
    first = run_batch(segmenter, [source], BatchOptions(output=out, show_progress=False, mesh="stl",
                                                        probabilities=True)).results[0]
    earlier = [Path(p) for p in first.extra_outputs]
    assert [p.name for p in earlier] == ["p7_probabilities.nii.gz", "p7.stl"] and all(p.is_file() for p in earlier)
    redo = BatchOptions(output=out, show_progress=False, mesh="obj", overwrite=True)
    with caplog.at_level(logging.WARNING):
        (result,) = run_batch(segmenter, [source], redo).results
    assert result.status == "ok" and [Path(p).name for p in result.extra_outputs] == ["p7.obj"]
    assert all(p.is_file() for p in earlier), "never removed: they may not be this case's to take"
    assert f"p7: left in place from an earlier run, not written by this one and no longer in the report: " \
           f"{earlier[0]}, {earlier[1]}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_batch(segmenter, [source], redo)  # the same outputs again: nothing to name
    assert "left in place" not in caplog.text
