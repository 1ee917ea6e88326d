"""The service's storage folder: received instances, durable series states, the outbox, refused objects.

Layout of ``STORAGE``::

    series/SERIES_UID/SOP_INSTANCE_UID.dcm   every instance acknowledged, written atomically and fsynced
    state/SERIES_UID.json                    each series' durable state (:mod:`.state`)
    outbox/                                  SEGs waiting for a destination (:mod:`.outbox`)
    refused.jsonl                            one line per object refused, with the reason
    status.json                              the queue and every series' state, rewritten as they change

A series is named by its SeriesInstanceUID (digits and dots, so a safe file name); that name is also its
case name in ``OUT`` (``OUT/SERIES_UID.seg.dcm``, its record and its row of ``report.csv``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from pydicom.dataset import Dataset

from atriumseg.pipeline.io.writing import finished_files, remove_stale_temporaries, write_atomically

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
INSTANCE_SUFFIX = ".dcm"


def valid_uid(value: object) -> bool:
    """Whether ``value`` is a DICOM UID (digits and dots, at most 64 characters)."""
    return isinstance(value, str) and len(value) <= 64 and bool(UID.match(value))


class Storage:
    """Paths and atomic writes inside one storage folder; safe to share between threads."""

    def __init__(self, root: Path, create: bool = True) -> None:
        self.root = Path(root).absolute()
        for folder in (self.series_root, self.state_root, self.outbox_root) if create else ():
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def series_root(self) -> Path:
        return self.root / "series"

    @property
    def state_root(self) -> Path:
        return self.root / "state"

    @property
    def outbox_root(self) -> Path:
        return self.root / "outbox"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def refused_file(self) -> Path:
        return self.root / "refused.jsonl"

    def series_folder(self, key: str) -> Path:
        return self.series_root / key

    def clean(self) -> None:
        """Remove temporary files left by a process that died while writing."""
        for folder in [self.root, self.state_root, self.outbox_root, *self.series_root.iterdir()]:
            if folder.is_dir():
                remove_stale_temporaries(folder)

    def write_instance(self, key: str, dataset: Dataset) -> Path:
        """Store one received instance (with its file meta) atomically and fsynced; OSError when the disk cannot."""
        path = self.series_folder(key) / f"{dataset.SOPInstanceUID}{INSTANCE_SUFFIX}"
        return write_atomically(path, lambda tmp: dataset.save_as(tmp, enforce_file_format=True))

    def instances(self, key: str) -> list[Path]:
        """The instance files of a series, sorted by name."""
        return finished_files(self.series_folder(key), INSTANCE_SUFFIX)

    def digest(self, key: str) -> str:
        """What identifies a series' content: a hash of its SOP Instance UIDs (the same instances sent again give
        the same digest; one new instance changes it)."""
        names = "\n".join(p.name for p in self.instances(key))
        return hashlib.sha256(names.encode()).hexdigest()[:16]

    def refuse(self, reason: str, **fields: str) -> None:
        """Append one refused object to ``refused.jsonl`` (flushed to disk): when, why, and what it was."""
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason, **fields})
        with open(self.refused_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def refused_count(self) -> int:
        """How many objects were refused: the lines of ``refused.jsonl``, counted without parsing them (the status
        is rewritten often; the file only grows)."""
        try:
            with open(self.refused_file, "rb") as fh:
                return sum(1 for line in fh if line.strip())
        except FileNotFoundError:
            return 0

    def write_json(self, path: Path, data: dict) -> Path:
        """A JSON file written atomically and fsynced."""
        text = json.dumps(data, indent=1, sort_keys=True)
        return write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
