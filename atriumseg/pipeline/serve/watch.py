"""The folder door (``--watch DIR``): each file or folder placed in DIR is handed on once it stops changing.

An entry is settled when its signature (for a file its size and modification time; for a folder those of every
file in it) has not changed for ``settle`` seconds. It is handed on once per signature: the first time since the
start as ``changed=False`` (what is done with it is the batch runner's: a case complete in OUT is not redone, as
with ``atriumseg segment DIR -o OUT`` run again, so a restart does not redo finished inputs), and each time it
settles with another signature as ``changed=True`` (a file replaced, a folder whose copy paused and then got more
files, an entry removed and put back different): its outputs are then redone. Entries are only read: never
modified, moved or deleted. Hidden entries (names starting with a dot) and files that are not images (notes, a
``.raw`` beside its ``.mhd``: the header is the image) are left alone, the latter logged once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from atriumseg.pipeline.io.names import image_suffix
from atriumseg.pipeline.serve.options import PAUSE_AFTER_ERROR

log = logging.getLogger(__name__)


def signature(path: Path) -> tuple:
    """What changes when a file or anything in a folder is written: sizes and modification times."""
    if not path.is_dir():
        info = path.stat()
        return ((path.name, info.st_size, info.st_mtime_ns),)
    found = []
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            try:
                info = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            found.append((os.path.relpath(os.path.join(folder, name), path), info.st_size, info.st_mtime_ns))
    return tuple(found)


class Watcher:
    """Polls ``folder``; calls ``submit(path, changed)`` for each entry settled for ``settle`` seconds, once per
    signature (``changed``: it was handed on before, with another signature). ``settling`` names the entries seen
    but not yet handed on in their present form (still being copied, or not yet still for ``settle`` seconds), as
    of the last look, for the status."""

    def __init__(self, folder: Path, settle: float, submit: Callable[[Path, bool], None],
                 skip: frozenset[Path]) -> None:
        self.folder = Path(folder)
        self.settle = settle
        self.submit = submit
        self.skip = skip
        self._seen: dict[Path, tuple[tuple, float]] = {}  # entry -> (signature, since when unchanged)
        self._handed: dict[Path, int] = {}  # entry -> hash of the signature handed on (kept when the entry goes)
        self._strays: set[Path] = set()  # files that are not images, already said
        self.settling: tuple[str, ...] = ()  # replaced whole after each look, so another thread reads it safely

    def poll(self, now: float | None = None) -> list[Path]:
        """One look at the folder; the entries handed on."""
        now = time.time() if now is None else now
        handed = []
        try:
            entries = sorted(p for p in self.folder.iterdir() if not p.name.startswith("."))
        except OSError as err:
            log.error("cannot read the watch folder %s: %s", self.folder, err)
            self.settling = ()  # nothing seen this time: the status does not name entries it cannot see
            return []
        for entry in entries:
            if entry.resolve() in self.skip:
                continue
            if entry.is_file() and not image_suffix(entry):
                if entry not in self._strays:  # said once, as a batch run lists a stray once
                    log.info("watch %s: not an image file, left alone", entry)
                    self._strays.add(entry)
                continue
            try:
                sig = signature(entry)
            except OSError:
                continue
            previous = self._seen.get(entry)
            since = previous[1] if previous and previous[0] == sig else now
            self._seen[entry] = (sig, since)
            before = self._handed.get(entry)
            if sig and now - since >= self.settle and before != hash(sig):
                self._handed[entry] = hash(sig)
                self.submit(entry, before is not None)
                handed.append(entry)
        for entry in set(self._seen) - set(entries):
            del self._seen[entry]
        self.settling = tuple(entry.name for entry, (sig, _) in sorted(self._seen.items())
                              if sig and self._handed.get(entry) != hash(sig))
        return handed

    def run(self, stop: threading.Event) -> None:
        interval = min(1.0, max(0.1, self.settle / 4))
        pause = interval
        while not stop.wait(pause):
            try:
                self.poll()
                pause = interval
            except Exception:  # an unreadable folder, a full disk: logged, and the folder is looked at again later
                log.exception("watch: unexpected error; looking at %s again in %.0f s", self.folder, PAUSE_AFTER_ERROR)
                pause = PAUSE_AFTER_ERROR
