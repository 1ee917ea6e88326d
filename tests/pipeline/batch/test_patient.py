"""The patient columns of a report: study identifiers (unless anonymous) and the LA volume index from the
--patients CSV or the series' own tags, an implausible body size leaving them empty with the reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import SERIES_UID, report_rows, write_series
from helpers import segment_cli as segment

from atriumseg.cli import EXIT_OK
from atriumseg.pipeline.analysis.body_size import BodySize
from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.patient import patient_fields

SAGITTAL = ((0, 1, 0), (0, 0, -1))  # LPS row and column cosines
BSA_175_CM_70_KG = 1.8447  # sqrt(175 * 70 / 3600), the body size write_series stores
IDENTIFIERS = ("patient_id", "study_uid", "series_uid", "accession_number", "series_description")


def test_a_dicom_case_gets_its_identifiers_and_index_from_its_tags(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "study", *SAGITTAL)
    values = patient_fields(InputCase("study", folder, SERIES_UID), 55.0, {})
    assert values["series_uid"] == SERIES_UID and set(IDENTIFIERS) <= set(values)
    assert values["bsa_m2"] == pytest.approx(BSA_175_CM_70_KG, abs=1e-4)
    assert values["lavi_ml_m2"] == pytest.approx(55.0 / values["bsa_m2"])
    anonymous = patient_fields(InputCase("study", folder, SERIES_UID), 55.0, {}, anonymous=True)
    assert not set(IDENTIFIERS) & set(anonymous) and anonymous["bsa_m2"] == values["bsa_m2"]


def test_a_file_case_has_an_index_only_from_the_patients_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    case = InputCase("p1", tmp_path / "p1.nii.gz")
    listed = patient_fields(case, 80.0, {"p1": BodySize(180.0, 81.0, "patients.csv line 2")})
    assert listed == pytest.approx({"height_cm": 180.0, "weight_kg": 81.0, "bsa_m2": 2.0125, "lavi_ml_m2": 39.7523},
                                   abs=1e-4)
    with caplog.at_level(logging.INFO):
        assert patient_fields(case, 80.0, {}) == {}
    assert "p1: no BSA or LAVI" in caplog.text
    empty = patient_fields(case, 0.0, {"p1": BodySize(180.0, 81.0, "patients.csv line 2")})
    assert "lavi_ml_m2" not in empty and empty["bsa_m2"] == pytest.approx(2.0125, abs=1e-4)
    assert "p1: no LAVI: no atrium segmented" in caplog.text
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


def test_a_finished_case_rerun_with_anonymous_or_new_patients_gets_this_runs_patient_columns(
    tmp_path: Path, model_folder: Path
) -> None:
    """--anonymous and --patients change the report only: the finished case is not redone, but its row must not
    keep the identifiers a later run asked to leave out, nor an old body size."""
    folder = write_series(tmp_path / "study", *SAGITTAL)
    out = tmp_path / "out"
    assert segment([folder], out, model_folder) == EXIT_OK
    first = report_rows(out)["study"]
    mask = next(out.glob("study*.nii.gz"))
    written = mask.stat().st_mtime_ns
    assert first["series_uid"] == SERIES_UID and float(first["bsa_m2"]) == BSA_175_CM_70_KG
    patients = tmp_path / "patients.csv"
    patients.write_text("case,height_cm,weight_kg\nstudy,180,81\n")
    assert segment([folder], out, model_folder, "--anonymous", "--patients", str(patients)) == EXIT_OK
    again = report_rows(out)["study"]
    assert all(again[k] == "" for k in IDENTIFIERS) and again["bsa_m2"] == "2.0125"
    assert again["volume_ml"] == first["volume_ml"] and mask.stat().st_mtime_ns == written, "not redone"
    assert segment([folder], out, model_folder) == EXIT_OK  # left out they stay out: no file is read again
    assert report_rows(out)["study"]["series_uid"] == ""
    assert segment([folder], out, model_folder, "--overwrite") == EXIT_OK  # redone: the identifiers are back
    assert report_rows(out)["study"]["series_uid"] == SERIES_UID


def test_a_finished_case_whose_input_is_gone_keeps_its_record(tmp_path: Path, model_folder: Path) -> None:
    folder = write_series(tmp_path / "study", *SAGITTAL)
    out = tmp_path / "out"
    assert segment([folder], out, model_folder) == EXIT_OK
    first = report_rows(out)["study"]
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    assert segment([folder], out, model_folder) == EXIT_OK
    assert report_rows(out)["study"] == first
    assert segment([folder], out, model_folder, "--anonymous") == EXIT_OK
    again = report_rows(out)["study"]
    assert all(again[k] == "" for k in IDENTIFIERS) and again["bsa_m2"] == first["bsa_m2"]
