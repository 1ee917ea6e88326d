"""The worker: one series that raises is recorded as failed and the others are still served; one whose outputs
OUT cannot take waits for its retry without holding up the queue."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pydicom
import pytest

from atriumseg.pipeline.batch.report import FAILED as CASE_FAILED
from atriumseg.pipeline.batch.report import CaseResult
from atriumseg.pipeline.serve.cases import OutputUnusable
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.state import COMPLETE, FAILED, SEGMENTED, Ledger
from atriumseg.pipeline.serve.storage import Storage
from atriumseg.pipeline.serve.worker import Job, JobQueue, Worker
from serve.nodes import mr_series, wait_until


def _queued(tmp_path: Path, storage: Storage, ledger: Ledger, key: str) -> None:
    for path in mr_series(tmp_path / "in" / key, key)[:2]:
        storage.write_instance(key, pydicom.dcmread(path))
    ledger.update(key, status=COMPLETE, digest=storage.digest(key))


PACS = "PACS@127.0.0.1:4242"


def _seg_of(folder: Path) -> CaseResult:
    """A made-up result whose output is a DICOM file (any: the worker reads its SOP Instance UID)."""
    return CaseResult(folder.name, str(folder), output=str(sorted(folder.glob("*.dcm"))[0]), volume_ml=12.0)


@pytest.fixture
def worker_parts(tmp_path: Path):
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    return storage, ledger, Outbox(storage)


def test_a_series_that_raises_is_failed_with_the_reason_and_the_worker_serves_the_next(tmp_path: Path,
                                                                                       worker_parts) -> None:
    storage, ledger, outbox = worker_parts
    calls: list[str] = []
    started = time.time()

    def segment(folder: Path, is_series: bool, redo: bool) -> list[CaseResult]:
        calls.append(folder.name)
        if folder.name == "1.2.1":
            raise KeyError("PixelSpacing")  # e.g. the SEG writer meeting an odd dataset
        return [_seg_of(folder)]

    jobs, stop = JobQueue(), threading.Event()
    for key in ("1.2.1", "1.2.2"):
        _queued(tmp_path, storage, ledger, key)
        jobs.put(Job(series=key))
    thread = threading.Thread(target=Worker(segment, storage, ledger, outbox, [PACS]).run, args=(jobs, stop))
    thread.start()
    try:
        wait_until(lambda: ledger.get("1.2.2").status == SEGMENTED, 10, "the second series segmented")
        failed = ledger.get("1.2.1")
        assert failed.status == FAILED and "KeyError" in failed.reason and "PixelSpacing" in failed.reason
        assert failed.done >= started  # the --keep-days clock of a failed series starts
        assert thread.is_alive() and calls == ["1.2.1", "1.2.2"]  # tried once, not again and again
        wait_until(outbox.deliveries, 5, "the SEG in the outbox")  # owed to the destinations it was made for,
        assert ledger.get("1.2.2").send_to == (PACS,)  # and those recorded for a restart
        assert [(d.key, d.destination) for d in outbox.deliveries()] == [("1.2.2", PACS)]
    finally:
        stop.set()
        thread.join(5)


def test_a_series_that_cannot_be_segmented_is_failed_and_its_retention_clock_starts(tmp_path: Path,
                                                                                    worker_parts) -> None:
    storage, ledger, outbox = worker_parts

    def segment(folder: Path, is_series: bool, redo: bool) -> list[CaseResult]:
        return [CaseResult(folder.name, str(folder), status=CASE_FAILED, reason="a single slice: not a 3D series")]

    _queued(tmp_path, storage, ledger, "1.2.7")
    started = time.time()
    Worker(segment, storage, ledger, outbox, [PACS]).series("1.2.7", JobQueue())
    state = ledger.get("1.2.7")
    assert state.status == FAILED and state.reason == "a single slice: not a 3D series" and state.done >= started
    assert outbox.deliveries() == []


def test_a_series_whose_outputs_cannot_be_written_waits_while_the_others_go_ahead(tmp_path: Path,
                                                                                  worker_parts) -> None:
    storage, ledger, outbox = worker_parts

    def segment(folder: Path, is_series: bool, redo: bool) -> list[CaseResult]:
        if folder.name == "1.3.1":
            raise OutputUnusable("OUT is full")
        return [_seg_of(folder)]

    jobs = JobQueue()
    worker = Worker(segment, storage, ledger, outbox, [])
    for key in ("1.3.1", "1.3.2"):
        _queued(tmp_path, storage, ledger, key)
    started = time.monotonic()
    worker.series("1.3.1", jobs)
    assert time.monotonic() - started < 5  # not a 30 s wait on the one worker thread
    assert ledger.get("1.3.1").status == COMPLETE and ledger.get("1.3.1").reason == "OUT is full"
    jobs.put(Job(series="1.3.2"))
    assert jobs.get(timeout=0.1) == Job(series="1.3.2") and jobs.waiting() == ["1.3.1"]
    assert jobs.get(timeout=0.1) is None  # the retry is not due yet


def test_a_watched_input_whose_outputs_cannot_be_written_is_tried_again_later(tmp_path: Path, worker_parts,
                                                                              monkeypatch) -> None:
    storage, ledger, outbox = worker_parts
    monkeypatch.setattr("atriumseg.pipeline.serve.worker.RETRY_OUTPUT_SECONDS", 1.0)

    def segment(path: Path, is_series: bool, redo: bool) -> list[CaseResult]:
        raise OutputUnusable("OUT is full")

    jobs, case = JobQueue(), tmp_path / "watch" / "p1.nii.gz"
    Worker(segment, storage, ledger, outbox, []).watched(Job(path=case, redo=True), jobs)
    assert jobs.waiting() == [str(case)] and jobs.get(timeout=0.1) is None  # waits for its retry, not dropped
    assert jobs.get(timeout=5) == Job(path=case, redo=True)  # still to be redone when tried again


def test_a_job_put_for_later_is_taken_once_due_and_one_put_again_now_is_taken_now() -> None:
    jobs = JobQueue()
    jobs.put(Job(series="a"), not_before=time.time() + 0.3)
    jobs.put(Job(series="b"))
    assert jobs.get(timeout=0) == Job(series="b") and jobs.get(timeout=0) is None
    assert jobs.get(timeout=5) == Job(series="a")
    jobs.put(Job(series="c"), not_before=time.time() + 60)
    jobs.put(Job(series="c"))  # completed again meanwhile: due now, queued once
    assert jobs.get(timeout=0) == Job(series="c") and jobs.waiting() == []
