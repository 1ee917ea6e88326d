"""The identifiers and body size a DICOM series carries, so a report can be joined to the hospital's studies."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

IDENTIFIER_COLUMNS = ("patient_id", "study_uid", "series_uid", "accession_number", "series_description")


@dataclass(frozen=True)
class SeriesTags:
    """Identifiers of a series ("" when absent) and the patient's size in the units DICOM stores them.

    ``patient_size_m`` (PatientSize) and ``patient_weight_kg`` (PatientWeight) are None when absent or
    empty and NaN when not a number; they are passed on unchecked, plausibility is the caller's.
    """

    patient_id: str
    study_uid: str
    series_uid: str
    accession_number: str
    series_description: str
    patient_size_m: float | None
    patient_weight_kg: float | None

    def identifiers(self) -> dict[str, str]:
        """The identifiers under the names of :data:`IDENTIFIER_COLUMNS`."""
        values = asdict(self)
        return {name: values[name] for name in IDENTIFIER_COLUMNS}


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _number(dataset: Dataset, keyword: str) -> float | None:
    """A DS value as a float: None when absent or empty, NaN when it does not parse."""
    try:
        value = dataset.get(keyword)
    except ValueError:  # pydicom converts DS on access and refuses text such as "abc"
        return math.nan
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_series_tags(path: Path) -> SeriesTags:
    """Read the tags of one file of a series (its header only); every file of a series shares them."""
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    return SeriesTags(
        patient_id=_text(dataset, "PatientID"),
        study_uid=_text(dataset, "StudyInstanceUID"),
        series_uid=_text(dataset, "SeriesInstanceUID"),
        accession_number=_text(dataset, "AccessionNumber"),
        series_description=_text(dataset, "SeriesDescription"),
        patient_size_m=_number(dataset, "PatientSize"),
        patient_weight_kg=_number(dataset, "PatientWeight"),
    )
