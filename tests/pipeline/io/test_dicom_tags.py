"""Study identifiers and body size read from a series' DICOM header; absent or garbled tags are None or NaN."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
from helpers import SERIES_UID, write_series

from atriumseg.pipeline.io.dicom_tags import read_series_tags
from atriumseg.pipeline.io.readers import series_files

AXIAL = ((1, 0, 0), (0, 1, 0))  # LPS row and column cosines
def test_series_tags_are_read_from_the_header(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL)
    tags = read_series_tags(series_files(folder, SERIES_UID)[0])
    assert tags.identifiers() == {
        "patient_id": "PAT-0042", "study_uid": pydicom.dcmread(folder / "slice_000.dcm").StudyInstanceUID,
        "series_uid": SERIES_UID, "accession_number": "ACC-7", "series_description": "cine sax",
    }
    assert (tags.patient_size_m, tags.patient_weight_kg) == (1.75, 70.0)


def test_absent_or_garbled_body_size_tags_are_none_or_nan(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL, PatientSize="1.75", PatientWeight="", drop=("PatientSize",))
    tags = read_series_tags(folder / "slice_000.dcm")
    assert (tags.patient_size_m, tags.patient_weight_kg) == (None, None)
    garbled = write_series(tmp_path / "garbled", *AXIAL, PatientSize="9.99") / "slice_000.dcm"
    garbled.write_bytes(garbled.read_bytes().replace(b"9.99", b"tall"))
    assert math.isnan(read_series_tags(garbled).patient_size_m)
