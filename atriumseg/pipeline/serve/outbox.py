"""SEGs waiting for their destinations, durable across restarts, retried with a growing wait.

``STORAGE/outbox/SEG_UID.dcm`` is a copy of the SEG (so ``OUT`` may be cleaned or rewritten) and
``STORAGE/outbox/SERIES@DESTINATION.json`` one delivery: which SEG, how many tries, when to try next and the
last error. A delivery is removed only after the series' state records the destination as served, so a crash in
between leaves a delivery that the next start drops instead of sending twice. A newer SEG of the same series
replaces a delivery still waiting (the older SEG is then never sent).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from atriumseg.pipeline.io.writing import finished_files, write_atomically
from atriumseg.pipeline.serve.options import Destination
from atriumseg.pipeline.serve.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One SEG owed to one destination."""

    key: str
    destination: str
    seg_uid: str
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""

    @property
    def name(self) -> str:
        return f"{self.key}@{Destination.parse(self.destination).key}.json"


class Outbox:
    """The deliveries waiting in ``STORAGE/outbox``; thread-safe."""

    def __init__(self, storage: Storage, retry_seconds: tuple[float, float] = (5.0, 600.0)) -> None:
        self.storage = storage
        self.root = storage.outbox_root
        self.first_wait, self.longest_wait = retry_seconds
        self._lock = threading.Lock()

    def seg_file(self, seg_uid: str) -> Path:
        return self.root / f"{seg_uid}.dcm"

    def put(self, key: str, seg: Path, seg_uid: str, destinations: list[str]) -> None:
        """Owe ``seg`` to each destination (replacing older SEGs of the series still waiting)."""
        if not destinations:
            return
        target = self.seg_file(seg_uid)
        with self._lock:
            if not target.exists():
                write_atomically(target, lambda tmp: shutil.copyfile(seg, tmp))
            for destination in destinations:
                self._write(Delivery(key, destination, seg_uid))
            self._drop_orphans()

    def _write(self, delivery: Delivery) -> None:
        self.storage.write_json(self.root / delivery.name, asdict(delivery))

    def deliveries(self) -> list[Delivery]:
        """Every waiting delivery, oldest first (those that cannot be read are logged and left)."""
        found = []
        for path in finished_files(self.root, ".json"):
            try:
                found.append(Delivery(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as err:
                log.warning("%s: unreadable outbox entry (%s); left in place", path, err)
        return found

    def due(self, now: float | None = None) -> list[Delivery]:
        now = time.time() if now is None else now
        return [d for d in self.deliveries() if d.next_try <= now]

    def done(self, delivery: Delivery) -> bool:
        """Remove a delivery (sent, or found already served); its SEG file goes when nothing else owes it. Only
        while the stored delivery is still for ``delivery``'s SEG: a newer SEG put meanwhile stays owed (False)."""
        with self._lock:
            if not self._current(delivery):
                return False
            (self.root / delivery.name).unlink(missing_ok=True)
            self._drop_orphans()
            return True

    def _current(self, delivery: Delivery) -> bool:
        """Whether the stored delivery of ``delivery``'s series and destination is for the same SEG (under the lock)."""
        try:
            stored = json.loads((self.root / delivery.name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(stored, dict) and stored.get("seg_uid") == delivery.seg_uid

    def failed(self, delivery: Delivery, error: str, now: float | None = None) -> Delivery:
        """Record a failed try; the wait doubles from ``first_wait`` up to ``longest_wait``."""
        now = time.time() if now is None else now
        wait = min(self.longest_wait, self.first_wait * 2 ** delivery.attempts)
        later = replace(delivery, attempts=delivery.attempts + 1, next_try=now + wait, last_error=error)
        with self._lock:
            if self._current(delivery):  # not replaced by a newer SEG meanwhile
                self._write(later)
        return later

    def _drop_orphans(self) -> None:
        owed = {d.seg_uid for d in self.deliveries()}
        for path in finished_files(self.root, ".dcm"):
            if path.stem not in owed:
                path.unlink(missing_ok=True)
