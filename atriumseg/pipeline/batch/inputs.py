"""Discovery: turning what a user points at (files, folders, globs, list files) into a deterministic list of
cases (each output of a case is named in :mod:`.plan`).

Discovery only reads regular files (a FIFO or a device named like an image is a stray, never opened),
visits each folder once by its real path (symlink loops end), never enters the run's output folder
and leaves out every file a run wrote there (see :class:`Skip`).
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import glob
import io
import logging
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from atriumseg.pipeline.io.names import IMAGE_SUFFIXES, case_name
from atriumseg.pipeline.io.readers import dicom_series
from atriumseg.pipeline.io.volumes import file_kind

log = logging.getLogger(__name__)



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


@dataclass(frozen=True)
class Skip:
    """What discovery leaves out, by real path: ``folders`` are never entered while searching (the run's
    output folder; a folder named as an input is still searched) and ``files`` are never cases (what runs
    wrote: masks, probability maps, meshes, QC pictures, reports)."""

    folders: frozenset[Path] = field(default_factory=frozenset)
    files: frozenset[Path] = field(default_factory=frozenset)


def _safe(text: str) -> str:
    """``text`` as part of a file name: letters (any script), digits, dots and dashes kept, the rest ``_``."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "series"


def _decode_list(path: Path, data: bytes) -> str:
    """The text of a list file: UTF-8 (a byte-order mark, as Excel's "CSV UTF-8" writes, is dropped) or
    UTF-16 with its byte-order mark; anything else is refused as not text."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if b"\x00" in data:
        raise ValueError(f"{path}: not a text file (it holds NUL bytes); give a text file with one path per "
                         "line, or a CSV with a 'path' column")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start} is {data[err.start]:#04x}); save the list as "
                         "UTF-8 (in Excel: 'CSV UTF-8')") from err


def read_list(path: Path) -> list[str]:
    """Paths from a text list (one per line, # comments) or a ``.csv`` (its 'path' column, else the first);
    relative paths are taken relative to the list's folder. A file that is not text raises a ValueError."""
    path = Path(path)
    text = _decode_list(path, path.read_bytes())
    if path.suffix.lower() == ".csv":  # the csv module's rules: a quoted path may hold commas and line breaks
        rows = list(csv.reader(io.StringIO(text, newline="")))
        header = [c.strip().lower() for c in rows[0]] if rows else []
        if "path" in header:
            column, rows = header.index("path"), rows[1:]
        else:
            column = 0
        entries = [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    else:
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [str((path.parent / e) if not Path(e).is_absolute() else Path(e)) for e in entries]


def _is_dicom_file(entry: os.DirEntry) -> bool:
    """Whether a regular file carries the DICOM preamble marker (a file that cannot be read does not: it is then
    a case or a stray of its own, reported with its reason, and the search goes on)."""
    try:
        if not entry.is_file() or entry.stat().st_size <= 132:
            return False
        with open(entry.path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_cases(folder: Path, entries: list[os.DirEntry]) -> list[InputCase]:
    series = dicom_series(folder) if any(_is_dicom_file(e) for e in entries) else []
    name = Path(os.path.abspath(folder)).name  # '.' or '..' named after the folder it is; a link keeps its name
    if len(series) == 1:
        return [InputCase(name, folder, series[0][0])]
    labels = [_safe(desc or "series") for _, desc in series]
    return [
        InputCase(f"{name}_{label}" if labels.count(label) == 1 else f"{name}_{label}_{_safe(uid)}", folder, uid)
        for (uid, _), label in zip(series, labels, strict=True)
    ]


def _kind(path: str) -> str:
    """'dir', 'file' (regular), or what else it is: a FIFO, socket, device or broken link is never opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken link or unreadable entry"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return file_kind(mode)


def _walk(root: Path, skip: Skip, seen: set[Path], strays: list[Stray]) -> Iterator[tuple[Path, list[os.DirEntry]]]:
    """Each folder under ``root`` (itself included) once by real path, with its sorted visible entries;
    a folder that cannot be listed becomes a stray."""
    real = Path(os.path.realpath(root))
    if real in seen:
        return
    seen.add(real)
    try:
        with os.scandir(root) as listing:
            entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        strays.append(Stray(root, f"folder cannot be read ({err.strerror or err})"))
        return
    yield root, entries
    for entry in entries:
        if _kind(entry.path) != "dir":
            continue
        if Path(os.path.realpath(entry.path)) in skip.folders:
            log.info("%s: the output folder, not searched for inputs", entry.path)
        else:
            yield from _walk(Path(entry.path), skip, seen, strays)


_DETACHED_DATA = {".mhd": ("=", ("elementdatafile",)), ".nhdr": (":", ("data file", "datafile"))}


def _detached_data(header: Path) -> set[Path]:
    """The data file a detached header names (MHD ``ElementDataFile``, NRRD ``data file``; one file, relative to the
    header): part of that image, never a stray. ``LIST`` and numbered patterns are not followed; a header that
    cannot be read names none (it fails as its case)."""
    rule = _DETACHED_DATA.get(header.suffix.lower())
    if rule is None:
        return set()
    try:
        with open(header, "rb") as fh:
            text = fh.read(65536).decode("latin-1")
    except OSError:
        return set()
    separator, keys = rule
    data = set()
    for line in text.splitlines():
        name, found, value = line.partition(separator)
        if found and name.strip().lower() in keys and value.strip():
            data.add(Path(os.path.realpath(header.parent / value.strip())))
    return data


def _matches(parts: list[str], pattern: list[str]) -> bool:
    """Whether path components match glob components, ``**`` standing for any number of folders."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return _matches(parts, pattern[1:]) or (bool(parts) and _matches(parts[1:], pattern))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(parts[1:], pattern[1:])


def _glob(pattern: str, skip: Skip, strays: list[Stray]) -> list[str]:
    """Matches of a glob; ``**`` is searched with :func:`_walk`, so symlink loops end and skipped folders stay
    unvisited (Python's own recursive glob follows loops for ever)."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    parts = Path(pattern).parts
    fixed = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    if _kind(str(root)) != "dir":
        return []
    found = []
    for _, entries in _walk(root, skip, set(), strays):
        for entry in entries:
            relative = Path(entry.path).relative_to(root).parts
            if _matches(list(relative), list(parts[fixed:])):
                found.append(entry.path)
    return sorted(found)


class _Discovery:
    """The cases and strays found so far, and the folders already searched (by real path)."""

    def __init__(self, skip: Skip) -> None:
        self.skip = skip
        self.cases: list[InputCase] = []
        self.strays: list[Stray] = []
        self.seen: set[Path] = set()
        self.data: set[Path] = set()  # data files of the detached headers found (real paths): never strays

    def strays_left(self) -> list[Stray]:
        """The strays found, less the data files of detached headers found anywhere in the search."""
        return [s for s in self.strays if Path(os.path.realpath(s.path)) not in self.data]

    def named(self, text: str) -> None:
        """An input as given: a glob, a folder to search, or a path that stays a case whatever it is. What is
        found is named by absolute path, so records say which file they are of from any working folder."""
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matches = _glob(text, self.skip, self.strays)
            if not matches:
                self.cases.append(InputCase(case_name(Path(text)), Path(text)))
            for match in matches:
                self.found(Path(os.path.abspath(match)))
        elif Path(text).is_dir():
            self.search(Path(os.path.abspath(text)))
        else:
            self.cases.append(InputCase(case_name(Path(text)), Path(os.path.abspath(text))))
            self.data |= _detached_data(Path(text))

    def found(self, path: Path) -> None:
        """A path a folder or a glob turned up: searched, a case, or a stray (unless ``skip`` leaves it out)."""
        if Path(os.path.realpath(path)) in self.skip.files:
            return
        kind = _kind(str(path))
        if kind == "dir":
            if Path(os.path.realpath(path)) in self.skip.folders:
                log.info("%s: the output folder, not searched for inputs", path)
            else:
                self.search(path)
        elif kind != "file":
            self.strays.append(Stray(path, f"{kind}, not a regular file"))
        elif path.name.lower().endswith(IMAGE_SUFFIXES):
            self.cases.append(InputCase(case_name(path), path))
            self.data |= _detached_data(path)
        else:
            self.strays.append(Stray(path, "not an image file"))

    def search(self, folder: Path) -> None:
        """Every DICOM series and image file under ``folder``; files beside a DICOM series that are not images
        are the series' own (never strays)."""
        for path, entries in _walk(folder, self.skip, self.seen, self.strays):
            dicom = _dicom_cases(path, entries)
            self.cases.extend(dicom)
            for entry in entries:
                if _kind(entry.path) == "dir" or (dicom and not entry.name.lower().endswith(IMAGE_SUFFIXES)):
                    continue
                self.found(Path(entry.path))


def discover(inputs: Iterable[str | Path], skip: Skip = Skip()) -> tuple[list[InputCase], list[Stray]]:
    """Expand inputs into cases, sorted by name; stray files found inside folders are returned apart.

    A pattern with ``*?[`` is a glob; a folder is searched recursively, and each DICOM series in it is its
    own case. A path named explicitly stays a case even if it is missing or not an image, so that it fails
    with its reason; what folders and globs find is subject to ``skip``.
    """
    discovery = _Discovery(skip)
    for item in inputs:
        discovery.named(str(item))
    unique = {(c.path.resolve(), c.series_uid): c for c in discovery.cases}
    return sorted(unique.values(), key=lambda c: (c.name, str(c.path))), discovery.strays_left()


def in_shard(case: InputCase, shard: int, shards: int) -> bool:
    """Deterministic assignment of a case to one of ``shards`` by a hash of its name (stable across machines)."""
    return zlib.crc32(os.fsencode(case.name)) % shards == shard  # fsencode: names undecodable in UTF-8 too


def input_files(cases: Iterable[InputCase]) -> set[Path]:
    """The real paths of every file the cases read: each file, and every regular file of each DICOM folder."""
    files = set()
    for case in cases:
        if case.series_uid is None:
            files.add(Path(os.path.realpath(case.path)))
        elif _kind(str(case.path)) == "dir":
            with os.scandir(case.path) as listing:
                files.update(Path(os.path.realpath(e.path)) for e in listing if _kind(e.path) == "file")
    return files
