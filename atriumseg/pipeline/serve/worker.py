"""The one worker: segments complete series (and settled watch-folder inputs) one at a time, in the order they
completed, with the model loaded once; it never blocks receiving, which runs in the association threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from atriumseg.pipeline.batch.report import FAILED as CASE_FAILED
from atriumseg.pipeline.batch.report import OK, CaseResult
from atriumseg.pipeline.serve.cases import OutputUnusable
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.state import COMPLETE, FAILED, SEGMENTED, Ledger, SeriesState
from atriumseg.pipeline.serve.storage import Storage

log = logging.getLogger("atriumseg.serve")

RETRY_OUTPUT_SECONDS = 30.0  # wait before trying a series again when OUT could not take its outputs


@dataclass(frozen=True)
class Job:
    """A series of the DICOM door (its key) or an input of the watch folder (its path; ``redo`` when it was handed on
    again because it changed, so its outputs in OUT are out of date)."""

    series: str = ""
    path: Path | None = None
    redo: bool = False

    def __str__(self) -> str:
        return self.series or str(self.path)


class JobQueue:
    """First in, first out, except that a job put with ``not_before`` waits until then while later ones go ahead;
    its content can be read for the status."""

    def __init__(self) -> None:
        self._jobs: dict[Job, float] = {}  # each job and the time before which it is not taken (insertion order)
        self._ready = threading.Condition()

    def put(self, job: Job, not_before: float = 0.0) -> None:
        """Queue ``job`` (once: a job already waiting keeps its place and is taken at the earlier of both times)."""
        with self._ready:
            self._jobs[job] = min(self._jobs.get(job, not_before), not_before)
            self._ready.notify()

    def get(self, timeout: float) -> Job | None:
        """The first job that is due, waiting at most ``timeout`` seconds for one; None if none is."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                now = time.time()
                due = next((job for job, when in self._jobs.items() if when <= now), None)
                if due is not None:
                    del self._jobs[due]
                    return due
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                soonest = min(self._jobs.values(), default=now + left) - now
                self._ready.wait(max(0.01, min(left, soonest)))

    def waiting(self) -> list[str]:
        with self._ready:
            return [str(job) for job in self._jobs]


Segment = Callable[[Path, bool, bool], list[CaseResult]]  # (input, is a DICOM-door series, redo) -> results


class Worker:
    """Runs jobs until ``stop`` is set; the job in hand is always finished first."""

    def __init__(self, segment: Segment, storage: Storage, ledger: Ledger, outbox: Outbox,
                 destinations: list[str]) -> None:
        self.segment = segment
        self.storage = storage
        self.ledger = ledger
        self.outbox = outbox
        self.destinations = destinations
        self.current = ""

    def run(self, jobs: JobQueue, stop: threading.Event) -> None:
        while not stop.is_set():
            job = jobs.get(timeout=0.2)
            if job is None:
                continue
            self.current = str(job)
            try:
                if job.series:
                    self.series(job.series, jobs)
                else:
                    self.watched(job, jobs)
            except Exception as err:  # one job's failure never ends the worker (nor is it retried in a loop)
                log.exception("%s: not segmented: unexpected error", job)
                if job.series:
                    self._failed(job.series, f"unexpected error: {type(err).__name__}: {err}")
            finally:
                self.current = ""

    def _failed(self, key: str, reason: str) -> None:
        """Record a series whose processing raised as failed (it is done again if it is sent again)."""
        try:
            self.ledger.fail(key, reason)
        except Exception:
            log.exception("series %s: cannot record the failure", key)

    def watched(self, job: Job, jobs: JobQueue) -> None:
        """A watch-folder input, with the outputs and records ``atriumseg segment DIR -o OUT`` gives it (redone when
        ``job.redo``); tried again later, as a series is, when OUT cannot take them (the watcher hands an entry on
        once per content). A case settled from its earlier record is logged as "done earlier", not as made now."""
        try:
            results = self.segment(job.path, False, job.redo)
        except OutputUnusable as err:
            log.error("watch %s: not segmented, tried again in %.0f s: %s", job.path, RETRY_OUTPUT_SECONDS, err)
            jobs.put(job, not_before=time.time() + RETRY_OUTPUT_SECONDS)
            return
        for r in results:
            detail = f"{r.volume_ml:.1f} mL -> {r.output}" if r.status == OK else r.reason
            (log.error if r.status == CASE_FAILED else log.info)("watch %s: %s: %s", r.input, r.status, detail)

    def series(self, key: str, jobs: JobQueue) -> None:
        state = self.ledger.claim(key)
        if state is None:
            return  # instances came after it completed: it completes (and is queued) again
        if state.seg_uid and state.digest == state.segmented_digest:
            self.ledger.settle(key, SEGMENTED)
            log.info("series %s: the same %d instances again; SEG %s unchanged, not sent again", key,
                     state.instances, state.seg_uid)
            return
        started = time.perf_counter()
        try:
            results = self.segment(self.storage.series_folder(key), True, True)
        except OutputUnusable as err:
            self.ledger.settle(key, COMPLETE, reason=str(err))
            log.error("series %s: not segmented, tried again in %.0f s: %s", key, RETRY_OUTPUT_SECONDS, err)
            jobs.put(Job(series=key), not_before=time.time() + RETRY_OUTPUT_SECONDS)  # the others go on meanwhile
            return
        result = results[0] if results else CaseResult(key, str(self.storage.series_folder(key)), status=CASE_FAILED,
                                                        reason="no DICOM series found in its instances")
        self._record(state, result, time.perf_counter() - started)

    def _record(self, state: SeriesState, result: CaseResult, seconds: float) -> None:
        """Store the outcome (a failure starts the retention clock), owe the SEG to every destination (recorded in the
        state, so a restart owes it to those only), and log the series' one line."""
        key = state.key
        what = f"series {key} ({state.instances} instances from {', '.join(state.callers) or 'disk'})"
        if result.status != OK:
            self.ledger.settle(key, FAILED, reason=result.reason, output="", volume_ml=None)
            log.error("%s: failed in %.1f s: %s", what, seconds, result.reason)
            return
        if self.storage.digest(key) != state.digest:
            log.info("%s: new instances came while it was segmented; done again once complete", what)
            return
        seg_uid = str(pydicom.dcmread(result.output, stop_before_pixels=True).SOPInstanceUID)
        done = 0.0 if self.destinations else time.time()
        self.ledger.settle(key, SEGMENTED, segmented_digest=state.digest, seg_uid=seg_uid, output=result.output,
                           volume_ml=round(result.volume_ml, 3), reason="", done=done, send_to=tuple(self.destinations))
        self.outbox.put(key, Path(result.output), seg_uid, self.destinations)
        sending = f"; sending to {', '.join(self.destinations)}" if self.destinations else ""
        flags = f" [{'; '.join(result.flags)}]" if result.flags else ""
        log.info("%s: ok in %.1f s, %.1f mL%s -> %s%s", what, seconds, result.volume_ml, flags, result.output, sending)
