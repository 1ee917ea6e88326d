"""BSA by Mosteller and LAVI: exact numbers for plausible patients, None with a reason for anything else."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from atriumseg.pipeline.analysis.body_size import (
    BodySize,
    body_size_index,
    choose_body_size,
    mosteller_bsa_m2,
    read_patients,
)

BSA_175_CM_70_KG = math.sqrt(175 * 70 / 3600)  # 1.8447 m²


def test_mosteller_bsa_and_lavi_of_a_typical_adult() -> None:
    assert mosteller_bsa_m2(175, 70) == pytest.approx(1.8447, abs=1e-4)
    index = body_size_index(55.0, BodySize.from_dicom(1.75, 70.0))
    assert index.bsa_m2 == pytest.approx(BSA_175_CM_70_KG, rel=1e-12)
    assert index.lavi_ml_m2 == pytest.approx(55.0 / BSA_175_CM_70_KG, rel=1e-12)  # 29.815 mL/m²
    assert index.lavi_ml_m2 == pytest.approx(29.815, abs=1e-3)
    assert index.reason is None
    empty = body_size_index(0.0, BodySize.from_dicom(1.75, 70.0))
    assert empty.bsa_m2 == index.bsa_m2 and empty.lavi_ml_m2 is None and empty.reason is None


def test_the_plausible_range_is_inclusive() -> None:
    assert body_size_index(40.0, BodySize(50.0, 2.0, "test")).bsa_m2 == pytest.approx(math.sqrt(100 / 3600))
    assert body_size_index(40.0, BodySize(250.0, 400.0, "test")).bsa_m2 == pytest.approx(math.sqrt(1e5 / 3600))


# (height_cm, weight_kg, words the reason must hold)
UNUSABLE = [
    (None, 70.0, "height unknown"),
    (175.0, None, "weight unknown"),
    (math.nan, 70.0, "height is not a number"),
    (1.75, 70.0, "height 1.75 cm is outside the plausible 50-250 cm"),  # metres given as centimetres
    (175.0, 70000.0, "weight 70000 kg is outside the plausible 2-400 kg"),  # grams given as kilograms
    (175.0, 0.0, "weight 0 kg is outside"),
    (-175.0, 70.0, "height -175 cm is outside"),
    (math.inf, 70.0, "height inf cm is outside"),
    (49.9, 1.9, "height 49.9 cm is outside the plausible 50-250 cm; weight 1.9 kg is outside"),
]


@pytest.mark.parametrize(("height", "weight", "words"), UNUSABLE)
def test_unknown_or_absurd_body_size_gives_no_number_and_a_reason(height, weight, words) -> None:
    index = body_size_index(55.0, BodySize(height, weight, "patients.csv line 3"))
    assert (index.bsa_m2, index.lavi_ml_m2) == (None, None)
    assert words in index.reason and "(from patients.csv line 3)" in index.reason


def test_no_body_size_at_all_names_both_sources() -> None:
    index = body_size_index(55.0, None)
    assert (index.bsa_m2, index.lavi_ml_m2) == (None, None)
    assert "PatientSize" in index.reason and "--patients" in index.reason


def test_dicom_tags_are_converted_from_metres() -> None:
    assert BodySize.from_dicom(1.75, 70.0) == BodySize(175.0, 70.0, "DICOM PatientSize/PatientWeight")
    assert BodySize.from_dicom(None, None) == BodySize(None, None, "DICOM PatientSize/PatientWeight")


def test_patients_csv_with_bom_blank_lines_extra_columns_and_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_bytes(
        "\ufeffWeight_kg, case ,height_cm,note\n\n70,case_a,175,first visit\n  \n,case_b,162.5,\n80.5,case_c,,x\n"
        .encode("utf-8")
    )
    patients = read_patients(path)
    assert patients == {
        "case_a": BodySize(175.0, 70.0, f"{path} line 3"),
        "case_b": BodySize(162.5, None, f"{path} line 5"),
        "case_c": BodySize(None, 80.5, f"{path} line 6"),
    }


def test_the_csv_overrides_the_dicom_tags_for_the_cases_it_lists(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_text("case,height_cm,weight_kg\ncase_a,180,90\ncase_b,,\n")
    patients = read_patients(path)
    tags = BodySize.from_dicom(1.75, 70.0)
    listed = body_size_index(55.0, choose_body_size("case_a", patients, tags))
    assert listed.bsa_m2 == pytest.approx(math.sqrt(180 * 90 / 3600), rel=1e-12)  # 2.1213, not 1.8447
    assert body_size_index(55.0, choose_body_size("case_z", patients, tags)).bsa_m2 == pytest.approx(BSA_175_CM_70_KG)
    assert choose_body_size("case_z", patients, None) is None
    emptied = body_size_index(55.0, choose_body_size("case_b", patients, tags))
    assert emptied.bsa_m2 is None and f"{path} line 3" in emptied.reason  # a listed case takes its row whole


# (CSV text, words the error must hold)
BAD_FILES = [
    ("case,height_cm,weight_kg\ncase_a,175,70\ncase_b,tall,70\n", "line 3: height_cm 'tall' is not a number"),
    ("case,height_cm,weight_kg\ncase_a,175,70kg\n", "line 2: weight_kg '70kg' is not a number; give kilograms"),
    ("case,height_cm,weight_kg\ncase_a,175\n", "line 2: 2 fields; expected 3"),
    ("case,height_cm,weight_kg\n,175,70\n", "line 2: no case name"),
    ("case,height_cm,weight_kg\ncase_a,175,70\n\ncase_a,180,80\n", "line 4: case 'case_a' is already on line 2"),
    ("case,height,weight_kg\ncase_a,175,70\n", "no column height_cm"),
    ("", "no column case, height_cm, weight_kg in the header (empty file)"),
]


@pytest.mark.parametrize(("text", "words"), BAD_FILES)
def test_bad_patients_files_are_refused_naming_the_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "patients.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        read_patients(path)
    assert str(path) in str(error.value) and words in str(error.value), str(error.value)
