"""Turning what a user points at (files, folders, globs, list files) into a deterministic list of cases."""

from __future__ import annotations

import csv
import glob
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from atriumseg.pipeline.io.volumes import IMAGE_SUFFIXES, case_name, output_path
from atriumseg.pipeline.io.readers import dicom_series


@dataclass(frozen=True)
class InputCase:
    """One volume to segment: a file, or one series of a DICOM folder."""

    name: str
    path: Path
    series_uid: str | None = None


@dataclass(frozen=True)
class Stray:
    """Something found in a folder that is not an image, with the reason it is skipped."""

    path: Path
    reason: str


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "series"


def read_list(path: Path) -> list[str]:
    """Paths from a text list (one per line, # comments) or a ``.csv`` (its 'path' column, else the first);
    relative paths are taken relative to the list's folder."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        if rows and "path" in [c.strip().lower() for c in rows[0]]:
            column = [c.strip().lower() for c in rows[0]].index("path")
            rows = rows[1:]
        else:
            column = 0
        entries = [row[column].strip() for row in rows if row and row[column].strip()]
    else:
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [str((path.parent / e) if not Path(e).is_absolute() else Path(e)) for e in entries]


def _has_dicom_file(folder: Path) -> bool:
    """Whether any file directly in ``folder`` carries the DICOM preamble marker."""
    for entry in folder.iterdir():
        if entry.is_file() and entry.stat().st_size > 132:
            with open(entry, "rb") as fh:
                fh.seek(128)
                if fh.read(4) == b"DICM":
                    return True
    return False


def _dicom_cases(folder: Path) -> list[InputCase]:
    series = dicom_series(folder) if _has_dicom_file(folder) else []
    if len(series) == 1:
        return [InputCase(folder.name, folder, series[0][0])]
    descriptions = [desc for _, desc in series]
    return [
        InputCase(
            f"{folder.name}_{_safe(desc)}" if desc and descriptions.count(desc) == 1
            else f"{folder.name}_{_safe(desc or 'series')}_{_safe(uid)}",
            folder,
            uid,
        )
        for uid, desc in series
    ]


def discover(inputs: list[str | Path]) -> tuple[list[InputCase], list[Stray]]:
    """Expand inputs into cases, sorted by name; stray files found inside folders are returned apart.

    A pattern with ``*?[`` is a glob; a folder is searched recursively, and each DICOM series in it is its own case. A path named
    explicitly stays a case even if it is missing or not an image, so that it fails with its reason.
    """
    cases: list[InputCase] = []
    strays: list[Stray] = []

    def visit(folder: Path) -> None:
        dicom = _dicom_cases(folder)
        cases.extend(dicom)
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                visit(entry)
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                cases.append(InputCase(case_name(entry), entry))
            elif not dicom:
                strays.append(Stray(entry, "not an image file"))

    def add(item: str | Path) -> None:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                cases.append(InputCase(case_name(Path(text)), Path(text)))
            for match in matches:
                add(match)
            return
        path = Path(text)
        if path.is_dir():
            visit(path)
        else:
            cases.append(InputCase(case_name(path), path))

    for item in inputs:
        add(item)
    unique = {(c.path.resolve(), c.series_uid): c for c in cases}
    return sorted(unique.values(), key=lambda c: (c.name, str(c.path))), strays


def in_shard(case: InputCase, shard: int, shards: int) -> bool:
    """Deterministic assignment of a case to one of ``shards`` by a hash of its name (stable across machines)."""
    return zlib.crc32(case.name.encode()) % shards == shard


def target_path(case: InputCase, out_dir: Path, fmt: str) -> Path:
    """The mask path of a case; DICOM series are named after their folder (and series)."""
    if case.series_uid is not None:
        return Path(out_dir) / f"{case.name}.nii.gz"
    return output_path(case.path, out_dir, fmt)
