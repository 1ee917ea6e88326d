"""Case names keep dots and lose only the image suffix; mask suffixes follow the input's format."""

from __future__ import annotations

from pathlib import Path

import pytest

from atriumseg.pipeline.io.names import case_name, image_suffix, mask_suffix


@pytest.mark.parametrize(
    ("file_name", "case"),
    [("exam_T1_3.0mm.nii.gz", "exam_T1_3.0mm"), ("p.1.NII.GZ", "p.1"), ("scan.v2.nii", "scan.v2"),
     ("a.b.mhd", "a.b"), ("ct.nrrd", "ct"), ("notes.txt", "notes"), ("la_003.nii.gz", "la_003")],
)
def test_a_case_is_its_file_name_minus_the_image_suffix(tmp_path: Path, file_name: str, case: str) -> None:
    assert case_name(tmp_path / file_name) == case


def test_the_image_suffix_is_the_longest_match() -> None:
    assert [image_suffix(Path(n)) for n in ("a.nii.gz", "A.NII", "b.mhd", "c.gz", "d")] == [".nii.gz", ".nii", ".mhd",
                                                                                           "", ""]


def test_a_dicom_folder_is_named_by_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "series.1.2"
    folder.mkdir()
    assert case_name(folder) == "series.1.2"


@pytest.mark.parametrize(
    ("file_name", "fmt", "suffix"),
    [("a.nii", "nii.gz", ".nii.gz"), ("a.nii", "same", ".nii"), ("a.mhd", "same", ".mha"),
     ("a.nhdr", "same", ".nrrd"), ("a.NRRD", "same", ".nrrd"), ("a.mha", "nii.gz", ".nii.gz")],
)
def test_mask_suffix(tmp_path: Path, file_name: str, fmt: str, suffix: str) -> None:
    assert mask_suffix(tmp_path / file_name, fmt) == suffix


def test_an_unknown_mask_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'nii.gz' or 'same'"):
        mask_suffix(tmp_path / "a.nii", "dicom")
