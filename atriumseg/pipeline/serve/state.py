"""Each series' durable state: received, complete (queued), segmenting, segmented or failed, and sent per destination.

A state is written (atomically, fsynced) whenever its status changes, never per instance: the instance
files themselves say what was received. After a crash, :meth:`Ledger.recover` rebuilds what the states
cannot know (a series whose first instance landed just before the crash) from the files; a series caught
receiving gets a full ``--series-timeout`` from the restart, as its sender was cut off and may send again.
So a restart finishes every series received but not segmented or not sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

from atriumseg.pipeline.io.writing import finished_files
from atriumseg.pipeline.serve.storage import Storage

log = logging.getLogger(__name__)

SERIES_LOCKS = 64  # striped: series share a few locks, so their number stays fixed however many series come

RECEIVING, COMPLETE, SEGMENTING, SEGMENTED, FAILED = "receiving", "complete", "segmenting", "segmented", "failed"


@dataclass(frozen=True)
class SeriesState:
    """One series as the service knows it. ``digest`` names the instances last completed, ``segmented_digest`` those
    the current SEG was made from; ``send_to`` the destinations that SEG was made for (None in a state written before
    it was recorded); ``sent`` maps each destination to the SOP Instance UID of the SEG it holds."""

    key: str
    study_uid: str = ""
    series_uid: str = ""
    description: str = ""
    callers: tuple[str, ...] = ()
    status: str = RECEIVING
    instances: int = 0
    first_received: float = 0.0
    last_received: float = 0.0
    completed: float = 0.0
    digest: str = ""
    segmented_digest: str = ""
    seg_uid: str = ""
    output: str = ""
    volume_ml: float | None = None
    reason: str = ""
    send_to: tuple[str, ...] | None = None
    sent: dict[str, str] = field(default_factory=dict)
    done: float = 0.0  # the retention clock: when the SEG reached every destination (made, with none), or it failed
    purged: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> SeriesState:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["callers"] = tuple(values.get("callers", ()))
        if values.get("send_to") is not None:
            values["send_to"] = tuple(values["send_to"])
        return cls(**values)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["callers"] = list(self.callers)
        data["send_to"] = None if self.send_to is None else list(self.send_to)
        return data

    def destinations(self, configured: list[str]) -> list[str]:
        """Where the current SEG goes: the configured destinations it was made for (every configured one for a state
        from before ``send_to`` was recorded)."""
        return list(configured) if self.send_to is None else [d for d in self.send_to if d in configured]

    def delivered(self, destinations: list[str]) -> bool:
        """Whether the current SEG is at every destination."""
        return bool(self.seg_uid) and all(self.sent.get(d) == self.seg_uid for d in destinations)


class Ledger:
    """Every series' state, in memory and on disk; every change goes through :meth:`update` (thread-safe)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._states: dict[str, SeriesState] = {}
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set on every change (the status writer waits on it)
        self._series_locks = tuple(threading.Lock() for _ in range(SERIES_LOCKS))

    def series_lock(self, key: str) -> threading.Lock:
        """Held while a series' instance files change (an instance written and recorded; its folder purged), so
        that no instance is acknowledged into a folder being removed. Taken before the ledger's own lock."""
        return self._series_locks[hash(key) % SERIES_LOCKS]

    def _path(self, key: str):
        return self.storage.state_root / f"{key}.json"

    def load(self) -> None:
        """Read every state file; one that cannot be read is rebuilt from its series' files by :meth:`recover`."""
        for path in finished_files(self.storage.state_root, ".json"):
            try:
                state = SeriesState.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as err:
                log.warning("%s: unreadable series state (%s); rebuilt from its instances", path, err)
                continue
            self._states[state.key] = state

    def recover(self) -> list[SeriesState]:
        """After a start: series found on disk without a state get one; series caught receiving count their timeout
        from now. Returns the series to queue again (complete or segmenting), in order."""
        now = time.time()
        for folder in sorted(self.storage.series_root.iterdir()):
            if folder.is_dir() and folder.name not in self._states and self.storage.instances(folder.name):
                self.update(folder.name, series_uid=folder.name, first_received=now)
        for state in list(self._states.values()):
            if state.status == RECEIVING:  # its sender was cut off: give it a full timeout to send again
                self.update(state.key, last_received=now)
        queued = [s for s in self._states.values() if s.status in (COMPLETE, SEGMENTING)]
        return sorted(queued, key=lambda s: (s.completed, s.key))

    def get(self, key: str) -> SeriesState | None:
        with self._lock:
            return self._states.get(key)

    def all(self) -> list[SeriesState]:
        with self._lock:
            return sorted(self._states.values(), key=lambda s: (s.first_received, s.key))

    def update(self, key: str, **changes: object) -> SeriesState:
        """Change a series' state (creating it if new) and write it to disk before returning it."""
        with self._lock:
            return self._write(key, changes)

    def _write(self, key: str, changes: dict) -> SeriesState:
        new = replace(self._states.get(key) or SeriesState(key=key), **changes)
        self.storage.write_json(self._path(key), new.to_dict())
        self._states[key] = new
        self.changed.set()
        return new

    def settle(self, key: str, status: str, **changes: object) -> SeriesState:
        """The worker's result: ``status`` only if the series is still segmenting (an instance that came meanwhile
        put it back to receiving, and it will be completed again); the other changes either way. A failure starts
        the retention clock, as in :meth:`fail`."""
        with self._lock:
            current = self._states.get(key)
            if current is not None and current.status == SEGMENTING:
                changes["status"] = status
                if status == FAILED:
                    changes["done"] = time.time()
            return self._write(key, changes)

    def claim(self, key: str) -> SeriesState | None:
        """The worker takes a queued series: SEGMENTING if it is still complete (or was being segmented when the
        service stopped), checked and written under the lock; None if an instance put it back to receiving (it
        completes and is queued again) or it is unknown."""
        with self._lock:
            current = self._states.get(key)
            if current is None or current.status not in (COMPLETE, SEGMENTING):
                return None
            return self._write(key, {"status": SEGMENTING})

    def compare_and_set(self, seen: SeriesState, still: Callable[[], bool],
                        changes: Callable[[], dict]) -> SeriesState | None:
        """Apply ``changes()`` only if the series' state is still the very ``seen`` one (nothing changed it, not even
        an instance in memory) and ``still()`` holds, both checked under the lock; None (nothing written) if not."""
        with self._lock:
            if self._states.get(seen.key) is not seen or not still():
                return None
            return self._write(seen.key, changes())

    def fail(self, key: str, reason: str) -> SeriesState | None:
        """A series whose processing raised: FAILED with ``reason`` if it is still queued or segmenting (an instance
        that came meanwhile put it back to receiving: then only the reason is kept); None for an unknown key."""
        with self._lock:
            current = self._states.get(key)
            if current is None:
                return None
            changes: dict = {"reason": reason}
            if current.status in (COMPLETE, SEGMENTING):
                changes.update(status=FAILED, done=time.time())  # the retention clock starts
            return self._write(key, changes)

    def record_sent(self, key: str, destination: str, seg_uid: str, destinations: list[str],
                    when: float) -> SeriesState:
        """``destination`` now holds SEG ``seg_uid``; ``done`` (the retention clock) starts only if that SEG is still
        the series' current one and every destination of it (among ``destinations``, those configured) holds it
        (checked and written at once, under the lock)."""
        with self._lock:
            state = self._states.get(key) or SeriesState(key=key)
            changes: dict = {"sent": {**state.sent, destination: seg_uid}}
            if state.seg_uid == seg_uid and replace(state, **changes).delivered(state.destinations(destinations)):
                changes["done"] = when
            return self._write(key, changes)

    def touch(self, key: str, when: float, caller: str, **meta: object) -> SeriesState:
        """An instance arrived: in memory only while the series is receiving from this caller, else written."""
        with self._lock:
            state = self._states.get(key)
            if state is not None and state.status == RECEIVING and caller in state.callers:
                self._states[key] = replace(state, last_received=when)
                return self._states[key]
            callers = tuple(sorted({*(state.callers if state else ()), caller}))
            first = state.first_received if state and state.status == RECEIVING else when
            return self._write(key, dict(meta, status=RECEIVING, last_received=when, first_received=first,
                                         callers=callers, purged=False))
