"""Read-ahead: the run's cases claimed in order and read in background threads while the model works."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from atriumseg.pipeline.batch.locks import CaseLock
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.plan import PlannedCase, claim
from atriumseg.pipeline.batch.records import Settled
from atriumseg.pipeline.batch.segment import read_case
from atriumseg.pipeline.io.volumes import Volume


@dataclass(frozen=True)
class Reading:
    """A claimed case being read: its plan, its lock and the volume to come."""

    planned: PlannedCase
    lock: CaseLock
    volume: Future[Volume]


class ReadAhead:
    """Keeps up to ``depth`` claimed cases reading ahead of the model, in the run's order.

    :meth:`refill` claims the next cases (returning those settled without running: busy elsewhere, complete,
    or blocked by a foreign file) until ``depth`` are reading or ``stopped()``; :meth:`next` hands over the
    oldest; :meth:`cancel` gives up every case not handed over, releasing its lock.
    """

    def __init__(self, todo: list[PlannedCase], options: BatchOptions, readers: ThreadPoolExecutor, depth: int):
        self._waiting = deque(todo)
        self._reading: deque[Reading] = deque()
        self._options = options
        self._readers = readers
        self._depth = depth

    def __bool__(self) -> bool:
        """Whether a case is reading (or read) and not yet handed over."""
        return bool(self._reading)

    @property
    def not_started(self) -> int:
        """Cases never handed over: waiting to be claimed, or reading."""
        return len(self._waiting) + len(self._reading)

    def refill(self, stopped: Callable[[], bool]) -> list[Settled]:
        settled = []
        while len(self._reading) < self._depth and self._waiting and not stopped():
            planned = self._waiting.popleft()
            lock = claim(planned, self._options)
            if isinstance(lock, Settled):
                settled.append(lock)
            else:
                self._reading.append(Reading(planned, lock, self._readers.submit(read_case, planned.case)))
        return settled

    def next(self) -> Reading:
        return self._reading.popleft()

    def cancel(self) -> None:
        for reading in self._reading:
            reading.volume.cancel()
            reading.lock.release()
