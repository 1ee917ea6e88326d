"""What the batch report says of a case's patient: the identifiers of its DICOM series and the LA volume index.

Identifiers join the report to the hospital's studies; ``anonymous`` leaves them out. Height and weight come
from the ``--patients`` CSV when it lists the case, else from the series' PatientSize/PatientWeight; an
unknown or implausible body size leaves height, weight, BSA and LAVI empty and logs the reason once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace

from atriumseg.pipeline.analysis.body_size import BodySize, body_size_index, choose_body_size
from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.report import CaseResult
from atriumseg.pipeline.io.dicom_tags import IDENTIFIER_COLUMNS

log = logging.getLogger(__name__)


def patient_fields(
    case: InputCase, volume_ml: float, patients: Mapping[str, BodySize], anonymous: bool = False
) -> dict[str, str | float]:
    """The report columns of ``case``'s patient under :class:`~.report.CaseResult` field names.

    Identifiers (DICOM series only, none when ``anonymous``), and ``height_cm``, ``weight_kg``, ``bsa_m2``,
    ``lavi_ml_m2`` when the body size is known and plausible (NaN otherwise, the reason logged); no ``lavi_ml_m2``
    for an empty mask, which measures no atrium.
    """
    values: dict[str, str | float] = {}
    dicom = None
    if case.series_uid is not None:
        from atriumseg.pipeline.io.dicom_tags import read_series_tags
        from atriumseg.pipeline.io.readers import series_files

        tags = read_series_tags(series_files(case.path, case.series_uid)[0])
        if not anonymous:
            values.update(tags.identifiers())
        if tags.patient_size_m is not None or tags.patient_weight_kg is not None:
            dicom = BodySize.from_dicom(tags.patient_size_m, tags.patient_weight_kg)
    return {**values, **_body_columns(case.name, volume_ml, choose_body_size(case.name, patients, dicom))}


def _body_columns(name: str, volume_ml: float, body: BodySize | None) -> dict[str, float]:
    """``height_cm``, ``weight_kg``, ``bsa_m2`` and ``lavi_ml_m2`` of ``body`` (none when unknown or implausible,
    the reason logged; no ``lavi_ml_m2`` for an empty mask)."""
    index = body_size_index(volume_ml, body)
    if index.reason is not None:
        (log.info if body is None else log.warning)("%s: no BSA or LAVI: %s", name, index.reason)
        return {}
    values = {"height_cm": body.height_cm, "weight_kg": body.weight_kg, "bsa_m2": index.bsa_m2}
    if index.lavi_ml_m2 is not None:
        values["lavi_ml_m2"] = index.lavi_ml_m2
    else:
        log.warning("%s: no LAVI: no atrium segmented (empty mask)", name)
    return values


_BODY_COLUMNS = ("height_cm", "weight_kg", "bsa_m2", "lavi_ml_m2")


def refresh_patient(
    result: CaseResult, case: InputCase, patients: Mapping[str, BodySize], anonymous: bool = False
) -> CaseResult:
    """The record of a case an earlier run finished under this run's report options, reading no file: with
    ``anonymous`` its identifiers are left out, and a ``--patients`` row for it gives its body size and index. They
    change the report only, so the case is not redone; what they do not name stays as the record has it (identifiers
    left out earlier come back, and a body size from the DICOM tags replaces a ``--patients`` one, with
    ``--overwrite``)."""
    updated = replace(result, **{name: "" for name in IDENTIFIER_COLUMNS}) if anonymous else result
    if case.name in patients:
        unset = {name: math.nan for name in _BODY_COLUMNS}
        updated = replace(updated, **{**unset, **_body_columns(case.name, result.volume_ml, patients[case.name])})
    return updated
