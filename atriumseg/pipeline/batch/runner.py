"""Segmenting many inputs: every case ends ``ok``, ``skipped`` or ``failed`` with a reason, never a crash.

Reading runs ahead in background threads (:mod:`.readahead`) and writing trails behind in another
(:mod:`.export`), so the model is rarely idle; each case's record is written as soon as it ends; SIGINT/SIGTERM
stop the run cleanly between cases (a second signal interrupts at once; atomic writes still leave no partial
file). The rules a run keeps are listed in :mod:`.plan`; a volume that would exceed the size bound once
resampled is refused before resampling (:mod:`.segment`); a full disk or an unwritable output folder ends the
run early with the records it could write and the reason in :attr:`~.records.BatchOutcome.output_error`.
One input at a time, in the calling thread, is :func:`~.case.process_input`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from atriumseg.pipeline.batch.export import export_case, log_segmented
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.plan import Prepared, prepare
from atriumseg.pipeline.batch.readahead import ReadAhead, Reading
from atriumseg.pipeline.batch.records import BatchOutcome, conclude, failed_result, record_settled, store_and_release
from atriumseg.pipeline.batch.report import CaseResult
from atriumseg.pipeline.batch.segment import CASE_ERRORS, CaseSegmenter, segment_case

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.segmenter import Segmenter

log = logging.getLogger(__name__)

MAX_QUEUED_WRITES = 2  # segmented cases waiting for the writer thread


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM (finish the current case, then stop); a second one interrupts."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum: int, frame: object) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        log.warning("%s received: stopping after the current case (again to stop now)", signal.Signals(signum).name)
        event.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _WriteBehind:
    """The writer thread's queue: exports of segmented cases (at most :data:`MAX_QUEUED_WRITES` waiting, which
    bounds the memory they hold) and records of failed cases."""

    def __init__(self, writer: ThreadPoolExecutor) -> None:
        self._writer = writer
        self._pending: list[Future[CaseResult]] = []

    def submit(self, work: Callable[..., CaseResult], *args: Any, bounded: bool = True) -> None:
        while bounded:
            waiting = [p for p in self._pending if not p.done()]  # one look: a write may end at any moment
            if len(waiting) < MAX_QUEUED_WRITES:
                break
            waiting[0].result()
        self._pending.append(self._writer.submit(work, *args))

    def results(self) -> list[CaseResult]:
        return [p.result() for p in self._pending]


class _Batch:
    """One run of :func:`run_batch`: the model, the cases reading ahead, the writes behind, the progress bar."""

    def __init__(self, segmenter: Segmenter, prepared: Prepared, segment: CaseSegmenter, ahead: ReadAhead,
                 writes: _WriteBehind, stop: threading.Event) -> None:
        self.segmenter, self.options, self.halt = segmenter, prepared.options, prepared.halt
        self.segment, self.ahead, self.writes, self.stop = segment, ahead, writes, stop
        self.results = list(prepared.settled)
        self.bar = tqdm(total=len(prepared.todo), desc="segmenting", unit="case",
                        disable=not self.options.show_progress)

    def stopped(self) -> bool:
        return self.stop.is_set() or bool(self.halt.reason)

    def refill(self) -> None:
        for settled in self.ahead.refill(self.stopped):
            self.results.append(record_settled(self.options.output, settled, self.halt))
            self.bar.update()

    def run(self) -> bool:
        """Segment every case in turn until the last or a stop; whether a signal stopped the run."""
        self.refill()
        while self.ahead:
            if self.stopped():
                return self.stop.is_set()
            reading = self.ahead.next()
            self.refill()
            self.one(reading)
            self.bar.update()
        return False

    def one(self, reading: Reading) -> None:
        """Segment a case read ahead and hand it to the writer thread (its outputs, or its failure's record)."""
        started = time.perf_counter()
        try:
            segmented = self.segment(self.segmenter, reading.planned, reading.volume.result(), self.options)
        except CASE_ERRORS as err:
            failed = failed_result(reading.planned.case, err, time.perf_counter() - started)
            self.writes.submit(store_and_release, self.options.output, failed, self.halt, reading.lock, bounded=False)
            return
        segmented = segmented.timed(time.perf_counter() - started)
        self.writes.submit(export_case, segmented, self.options, self.halt, reading.lock)
        log_segmented(segmented)


def run_batch(
    segmenter: Segmenter, inputs: list[str | Path], options: BatchOptions, segment: CaseSegmenter = segment_case
) -> BatchOutcome:
    """Segment every case found in ``inputs`` (this shard's share) into ``options.output``.

    ``segment`` is the per-case model step (:func:`~.segment.segment_case`); pass a wrapper around it to
    observe, slow or interrupt cases. Raises :class:`~atriumseg.pipeline.io.writing.OutputFolderError` before
    any work when the output folder is unusable; a full disk or unwritable folder met later ends the run with
    ``output_error`` set.
    """
    prepared = prepare(inputs, options)
    options = prepared.options
    workers = max(1, options.workers)
    with stop_on_signals() as stop, ThreadPoolExecutor(workers) as readers, ThreadPoolExecutor(1) as writer:
        ahead, writes = ReadAhead(prepared.todo, options, readers, workers + 1), _WriteBehind(writer)
        batch = _Batch(segmenter, prepared, segment, ahead, writes, stop)
        try:
            interrupted = batch.run()
        finally:
            ahead.cancel()
            batch.bar.close()
        results = batch.results + writes.results()
    if interrupted or prepared.halt.reason:
        log.warning("stopped early: %d case(s) not started; run again to finish them", ahead.not_started)
    return conclude(options.output, results, interrupted, prepared.halt, options.qc)
