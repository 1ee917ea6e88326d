"""Per-case records and the batch report (``report.csv``, ``report.json``), rebuildable from an output folder.

Each case writes a small JSON record under ``OUTDIR/.atriumseg/records/`` as soon as it ends, so
shards running in parallel into one folder never write the same file, an interrupted run loses
nothing, and ``atriumseg report OUTDIR`` merges everything into one report at any time.

Before a case writes any output its record says ``failed`` with :data:`INTERRUPTED` and lists the
outputs it is about to write, so a process killed halfway leaves a truthful record, and the next run
knows those files are its own to finish. A case is complete (:func:`is_complete`) only when its record
says ``ok`` and every output it lists exists; outputs are recorded relative to the output folder, so a
copy of the folder judges its cases by its own files. Records are written atomically; hidden temporary files
are never read as records, and a record that cannot be read (truncated, corrupt) counts as missing.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from atriumseg.pipeline.io.writing import finished_files, remove_stale_temporaries, write_atomically

log = logging.getLogger(__name__)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
RECORDS = Path(".atriumseg") / "records"
REPORT_FILES = ("report.csv", "report.json")
QC_INDEX = Path("qc") / "index.html"
RELATIVE = "outputs_relative_to_folder"  # a record's key: its output paths are relative to its output folder
INTERRUPTED = "interrupted while its outputs were being written (run again to finish it)"


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one input: status, reason, timing, left-atrium volume, quality flags, study identifiers
    and LA volume index (fields added later default, so older records still load)."""

    case: str
    input: str
    output: str = ""
    status: str = OK
    reason: str = ""
    seconds: float = 0.0
    volume_ml: float = math.nan
    voxels: int = 0
    flags: tuple[str, ...] = field(default_factory=tuple)
    uncertainty: float = math.nan
    surface_area_mm2: float = math.nan
    sphericity: float = math.nan
    axis_1_mm: float = math.nan
    axis_2_mm: float = math.nan
    axis_3_mm: float = math.nan
    centroid_r_mm: float = math.nan
    centroid_a_mm: float = math.nan
    centroid_s_mm: float = math.nan
    qc_png: str = ""
    extra_outputs: tuple[str, ...] = field(default_factory=tuple)
    patient_id: str = ""  # the five identifiers: DICOM series inputs only, empty with --anonymous
    study_uid: str = ""
    series_uid: str = ""
    accession_number: str = ""
    series_description: str = ""
    height_cm: float = math.nan  # the body size BSA was computed from; NaN when unknown or implausible
    weight_kg: float = math.nan
    bsa_m2: float = math.nan
    lavi_ml_m2: float = math.nan

    @classmethod
    def from_dict(cls, data: dict) -> CaseResult:
        """Rebuild from :meth:`to_dict` output (JSON null means NaN)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in _FLOATS:
            if name in values:
                values[name] = math.nan if values[name] is None else float(values[name])
        values["flags"] = tuple(values.get("flags", ()))
        values["extra_outputs"] = tuple(values.get("extra_outputs", ()))
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes null, floats are rounded to 4 decimals."""
        data = asdict(self)
        for name in _FLOATS:
            data[name] = None if math.isnan(data[name]) else round(data[name], 4)
        data["flags"] = list(self.flags)
        data["extra_outputs"] = list(self.extra_outputs)
        return data


_FLOATS = tuple(f.name for f in fields(CaseResult) if f.type in ("float", float))


def outputs(result: CaseResult) -> list[Path]:
    """Every file a record lists as its case's output: the mask, the extra outputs and the QC picture."""
    return [Path(p) for p in (result.output, *result.extra_outputs, result.qc_png) if p]


def is_complete(result: CaseResult | None) -> bool:
    """A case is done when its record says ``ok`` and every output it lists exists."""
    if result is None or result.status != OK or not result.output:
        return False
    return all(p.is_file() for p in outputs(result))


def record_path(out_dir: Path, key: str) -> Path:
    """The record file of a case (``key`` is its name, or the name of a refused duplicate, see ``write_record``)."""
    return Path(out_dir) / RECORDS / f"{key}.json"


def write_record(out_dir: Path, result: CaseResult, key: str | None = None) -> Path:
    """Store one case's outcome atomically, under its case name unless ``key`` is given; outputs inside
    ``out_dir`` are stored relative to it, so a copy of the folder holds records of its own files."""
    base = os.path.abspath(out_dir)
    data = {**_rebased(result, lambda p: _inside(p, base)).to_dict(), RELATIVE: True}
    text = json.dumps(data, indent=1)
    return write_atomically(record_path(out_dir, key or result.case), lambda tmp: tmp.write_text(text))


def _inside(path: str, base: str) -> str:
    """``path`` relative to the absolute folder ``base`` when it lies inside, else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, base) if os.path.commonpath([path, base]) == base else path


def _rebased(result: CaseResult, rebase: Callable[[str], str]) -> CaseResult:
    """``result`` with ``rebase`` applied to each output path it lists (mask, extra outputs, QC picture)."""
    return replace(result, output=rebase(result.output) if result.output else "",
                   extra_outputs=tuple(map(rebase, result.extra_outputs)),
                   qc_png=rebase(result.qc_png) if result.qc_png else "")


def _load(path: Path, out_dir: Path) -> CaseResult | None:
    """A record file with its outputs as absolute paths under ``out_dir`` (a record written before outputs were
    stored relative keeps its paths), or None (with a warning) when it cannot be read: truncated, corrupt, or not a
    record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = CaseResult.from_dict(data)
        if data.get(RELATIVE) is True:
            base = Path(out_dir).absolute()
            result = _rebased(result, lambda p: str(base / p))
        return result
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning("%s: unreadable record, counted as missing (%s: %s)", path, type(err).__name__, err)
        return None


def read_record(out_dir: Path, case: str) -> CaseResult | None:
    """The record of ``case``, or None when there is none or it cannot be read."""
    return _load(record_path(out_dir, case), out_dir)


def collect(out_dir: Path) -> list[CaseResult]:
    """Every readable record in ``out_dir``, sorted by case name; temporary files are never read."""
    paths = finished_files(Path(out_dir) / RECORDS, ".json")
    records = (_load(path, out_dir) for path in paths)
    return sorted((r for r in records if r is not None), key=lambda r: (r.case, r.input))


def _report_row(result: CaseResult) -> dict:
    """A record as the report shows it: no voxel count where no mask was made (left empty, as the volume is, so a
    failed case never reads as an empty mask)."""
    row = result.to_dict()
    if result.status != OK:
        row["voxels"] = None
    return row


def write_report(out_dir: Path, results: list[CaseResult]) -> tuple[Path, Path]:
    """``report.csv`` (one row per case, flags joined by ';') and ``report.json`` (cases and totals)."""
    out_dir = Path(out_dir)
    columns = [f.name for f in fields(CaseResult)]

    def write_csv(tmp: Path) -> None:
        # backslashreplace: a file name undecodable in UTF-8 (a Latin-1 share) is written as p\xe9rez, never fatal
        with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for r in results:
                row = _report_row(r)
                row["flags"] = ";".join(r.flags)
                row["extra_outputs"] = ";".join(r.extra_outputs)
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    payload = {"totals": totals(results), "cases": [_report_row(r) for r in results]}
    csv_name, json_name = REPORT_FILES
    csv_path = write_atomically(out_dir / csv_name, write_csv)
    json_path = write_atomically(out_dir / json_name, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))
    return csv_path, json_path


def rebuild_report(out_dir: Path, qc: bool | None = None) -> list[CaseResult]:
    """Merge every readable record in ``out_dir`` into report.csv/json (and the QC contact sheet when pictures
    exist, or ``qc`` says so); temporary files left by dead writers are removed first, and none is ever read
    as a record."""
    remove_stale_temporaries(Path(out_dir) / RECORDS)
    results = collect(out_dir)
    write_report(out_dir, results)
    qc_dir = Path(out_dir) / "qc"
    if qc or (qc is None and qc_dir.is_dir()):
        from atriumseg.pipeline.batch.qc import SheetEntry, contact_sheet

        entries = [
            SheetEntry(r.case, Path(r.qc_png) if r.qc_png else qc_dir / f"{r.case}.png",
                       r.status + (f" | flags: {'; '.join(r.flags)}" if r.flags else "")
                       + (f" | {r.reason}" if r.reason else ""),
                       flagged=bool(r.flags) or r.status == FAILED)
            for r in results
        ]
        contact_sheet(entries, Path(out_dir) / QC_INDEX)
    return results


def totals(results: list[CaseResult]) -> dict[str, float]:
    """Counts per status, flagged cases and total seconds."""
    return {
        "cases": len(results),
        OK: sum(r.status == OK for r in results),
        SKIPPED: sum(r.status == SKIPPED for r in results),
        FAILED: sum(r.status == FAILED for r in results),
        "flagged": sum(bool(r.flags) for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def summary_table(results: list[CaseResult]) -> str:
    """A plain-text table for the terminal: totals, then every failed or flagged case with its reason."""
    t = totals(results)
    lines = [
        f"{'cases':>7} {'ok':>6} {'skipped':>8} {'failed':>7} {'flagged':>8} {'time':>9}",
        f"{t['cases']:>7} {t[OK]:>6} {t[SKIPPED]:>8} {t[FAILED]:>7} {t['flagged']:>8} {t['seconds']:>8.1f}s",
    ]
    for r in results:
        if r.status == FAILED:
            lines.append(f"  FAILED  {r.case}: {r.reason}")
        elif r.flags:
            lines.append(f"  FLAGGED {r.case}: {', '.join(r.flags)}")
    return "\n".join(lines)
