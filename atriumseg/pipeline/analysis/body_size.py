"""Body surface area and the left atrial volume index (LAVI), from a height and weight that are checked first.

BSA is Mosteller's, ``sqrt(height_cm * weight_kg / 3600)``, and LAVI is the atrial volume over it, in
mL/m². Heights and weights come from the DICOM tags PatientSize (m) and PatientWeight (kg), or from a
``--patients`` CSV (``case,height_cm,weight_kg``) that overrides them for the cases it lists. An unknown
or implausible value gives no number at all, with the reason, never a wrong one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HEIGHT_RANGE_CM = (50.0, 250.0)
WEIGHT_RANGE_KG = (2.0, 400.0)
PATIENT_COLUMNS = ("case", "height_cm", "weight_kg")


@dataclass(frozen=True)
class BodySize:
    """A patient's height and weight as given (None when unknown, NaN when not a number) and where they come from."""

    height_cm: float | None
    weight_kg: float | None
    source: str

    @classmethod
    def from_dicom(cls, patient_size_m: float | None, patient_weight_kg: float | None) -> BodySize:
        """From the DICOM tags PatientSize (metres) and PatientWeight (kg)."""
        height_cm = None if patient_size_m is None else 100.0 * patient_size_m
        return cls(height_cm, patient_weight_kg, "DICOM PatientSize/PatientWeight")


@dataclass(frozen=True)
class BodySizeIndex:
    """BSA and LAVI, both None with the ``reason`` when the body size is unknown or implausible; LAVI alone None
    for an empty mask, which measures no atrium (an index of 0 would be averaged in as if measured)."""

    bsa_m2: float | None
    lavi_ml_m2: float | None
    reason: str | None = None


def mosteller_bsa_m2(height_cm: float, weight_kg: float) -> float:
    """Body surface area in m² by Mosteller (N Engl J Med 1987;317:1098), without any check."""
    return math.sqrt(height_cm * weight_kg / 3600.0)


def _problem(name: str, value: float | None, unit: str, bounds: tuple[float, float]) -> str | None:
    if value is None:
        return f"{name} unknown"
    if math.isnan(value):
        return f"{name} is not a number"
    if not bounds[0] <= value <= bounds[1]:
        return f"{name} {value:g} {unit} is outside the plausible {bounds[0]:g}-{bounds[1]:g} {unit}"
    return None


def implausibility(body: BodySize | None) -> str | None:
    """Why ``body`` cannot give a BSA (unknown, not a number, out of range, naming its source), or None."""
    if body is None:
        return "height and weight unknown (no DICOM PatientSize/PatientWeight and not in --patients)"
    problems = [
        p for p in (
            _problem("height", body.height_cm, "cm", HEIGHT_RANGE_CM),
            _problem("weight", body.weight_kg, "kg", WEIGHT_RANGE_KG),
        ) if p
    ]
    return f"{'; '.join(problems)} (from {body.source})" if problems else None


def body_size_index(volume_ml: float, body: BodySize | None) -> BodySizeIndex:
    """BSA and LAVI (``volume_ml / bsa_m2``) for an atrial volume, or None for both with the reason."""
    reason = implausibility(body)
    if reason is not None:
        return BodySizeIndex(None, None, reason)
    bsa = mosteller_bsa_m2(body.height_cm, body.weight_kg)
    return BodySizeIndex(bsa, volume_ml / bsa if volume_ml > 0 else None)


def choose_body_size(case: str, patients: Mapping[str, BodySize], dicom: BodySize | None) -> BodySize | None:
    """The body size of ``case``: its ``--patients`` row when it is listed there, whole; else its DICOM tags."""
    return patients.get(case, dicom)


def _cell(text: str, column: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        example = "centimetres, e.g. 175" if column == "height_cm" else "kilograms, e.g. 70.5"
        raise ValueError(f"{where}: {column} {text!r} is not a number; give {example}, or leave it empty") from None


def read_patients(path: Path) -> dict[str, BodySize]:
    """Read a ``--patients`` CSV: a header with ``case,height_cm,weight_kg`` (any order, extra columns
    ignored, a UTF-8 BOM and blank lines tolerated), one row per case; an empty cell means unknown."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        names = [cell.strip().lower() for cell in header or []]
        missing = [column for column in PATIENT_COLUMNS if column not in names]
        if missing:
            raise ValueError(
                f"{path}: no column {', '.join(missing)} in the header {header or '(empty file)'}; "
                f"the first line must name {','.join(PATIENT_COLUMNS)}"
            )
        position = {column: names.index(column) for column in PATIENT_COLUMNS}
        patients: dict[str, BodySize] = {}
        lines: dict[str, int] = {}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path} line {reader.line_num}"
            needed = max(position.values()) + 1
            if len(row) < needed:
                raise ValueError(f"{where}: {len(row)} fields; expected {needed} (leave a cell empty if unknown)")
            case = row[position["case"]].strip()
            if not case:
                raise ValueError(f"{where}: no case name; give the case as the report names it")
            if case in patients:
                raise ValueError(f"{where}: case {case!r} is already on line {lines[case]}; keep one row per case")
            patients[case] = BodySize(
                _cell(row[position["height_cm"]], "height_cm", where),
                _cell(row[position["weight_kg"]], "weight_kg", where),
                where,
            )
            lines[case] = reader.line_num
    return patients
