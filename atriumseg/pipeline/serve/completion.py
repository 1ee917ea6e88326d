"""When a series is complete: every association that sent to it has ended (released, aborted or dropped) and no
instance of it came for ``--series-timeout`` seconds. Completed series are queued in the order they completed."""

from __future__ import annotations

import threading
import time

from atriumseg.pipeline.serve.state import COMPLETE, RECEIVING, Ledger, SeriesState
from atriumseg.pipeline.serve.storage import Storage


class Completion:
    """Tracks open associations per series (in memory: after a restart no association is open)."""

    def __init__(self, storage: Storage, ledger: Ledger, timeout: float) -> None:
        self.storage = storage
        self.ledger = ledger
        self.timeout = timeout
        self._open: dict[int, set[str]] = {}
        self._lock = threading.Lock()

    def received(self, association: int, key: str) -> None:
        with self._lock:
            self._open.setdefault(association, set()).add(key)

    def ended(self, association: int) -> None:
        with self._lock:
            self._open.pop(association, None)

    def _busy(self) -> set[str]:
        with self._lock:
            return set().union(*self._open.values()) if self._open else set()

    def complete_due(self, now: float | None = None) -> list[SeriesState]:
        """Mark every series that is now complete (durably, with the digest of its instances) and return them
        in the order they completed: by their last instance's time."""
        now = time.time() if now is None else now
        busy = self._busy()
        due = [s for s in self.ledger.all()
               if s.status == RECEIVING and s.key not in busy and now - s.last_received >= self.timeout]
        completed = []
        for state in sorted(due, key=lambda s: (s.last_received, s.key)):
            # checked again under the ledger's lock: an instance or association that came since the look above wins
            done = self.ledger.compare_and_set(state, lambda key=state.key: key not in self._busy(),
                                               lambda key=state.key: self._complete(key, now))
            if done is not None:
                completed.append(done)
        return completed

    def _complete(self, key: str, now: float) -> dict:
        return dict(status=COMPLETE, completed=now, instances=len(self.storage.instances(key)),
                    digest=self.storage.digest(key))
