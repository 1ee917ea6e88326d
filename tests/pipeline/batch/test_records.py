"""Records as cases end: a full disk or an unwritable folder stops the run with the reason, any other write
error only costs that record; failed cases say why."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import pytest
from helpers import write_nifti

from atriumseg.pipeline.batch import report
from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.records import Halt, failed_result, store
from atriumseg.pipeline.batch.report import FAILED, OK, RECORDS, CaseResult, collect, read_record
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.io import writing
from atriumseg.pipeline.io.volumes import ImageReadError
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (36, 38, 24)


def _nifti(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "LPS", (0, 8, 0)), seed=seed)
    return write_nifti(path, case.image, case.affine)


@pytest.mark.parametrize(
    ("code", "stops"), [(errno.ENOSPC, True), (errno.EROFS, True), (errno.EACCES, True), (errno.EIO, False)]
)
def test_only_errors_no_later_case_escapes_stop_the_run(code: int, stops: bool) -> None:
    halt = Halt()
    assert halt.check(OSError(code, os.strerror(code)), "cannot write x") is stops
    assert halt.check(ValueError("no"), "cannot write y") is False
    assert (os.strerror(code) in halt.reason) is stops and halt.reason.startswith("cannot write x") is stops


def test_the_first_reason_wins_whatever_thread_sets_it() -> None:
    halt = Halt()
    threads = [threading.Thread(target=halt.stop, args=(f"reason {i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    halt.stop("later")
    assert halt.reason.startswith("reason ")


def test_a_record_that_cannot_be_written_stops_or_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    result = CaseResult("p1", "in/p1.nii.gz", "", OK)
    store(tmp_path, result, Halt())
    assert read_record(tmp_path, "p1") == result

    def failing(code: int):
        def write(path, write):
            raise OSError(code, os.strerror(code))
        return write

    halt = Halt()
    monkeypatch.setattr(report, "write_atomically", failing(errno.EIO))
    with caplog.at_level(logging.ERROR):
        store(tmp_path, result, halt)
    assert halt.reason == "" and "cannot write the record of p1" in caplog.text
    monkeypatch.setattr(report, "write_atomically", failing(errno.ENOSPC))
    store(tmp_path, result, halt)
    assert "cannot write the record of p1" in halt.reason and "run again to finish" in halt.reason


def test_a_failed_case_says_why() -> None:
    case = InputCase("p1", Path("in/p1.nii.gz"))
    read = failed_result(case, ImageReadError("in/p1.nii.gz: empty file (0 bytes)"), 0.5)
    assert (read.status, read.reason, read.seconds) == (FAILED, "in/p1.nii.gz: empty file (0 bytes)", 0.5)
    other = failed_result(case, MemoryError("out of memory"), 1.0)
    assert other.reason == "in/p1.nii.gz: MemoryError: out of memory"
def test_a_full_disk_ends_the_run_with_the_records_it_could_write_and_no_half_file(
    tmp_path: Path, segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = tmp_path / "in"
    for seed in (31, 32, 33, 34):
        _nifti(study / f"p{seed}.nii.gz", seed)
    out, full = tmp_path / "out", []
    real_save, real_write = writing.save_nifti, report.write_atomically

    def save_until_full(image, path, gzip):
        if "p32" in Path(path).name:
            full.append(True)
        if full:
            Path(path).write_bytes(b"half a ma")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(image, path, gzip)

    def write_unless_full(path, write):
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, write)

    monkeypatch.setattr(writing, "save_nifti", save_until_full)
    monkeypatch.setattr(report, "write_atomically", write_unless_full)
    outcome = run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False, workers=1))
    assert "No space left on device" in outcome.output_error and not outcome.interrupted
    results = {r.case: r.status for r in outcome.results}
    assert results["p31"] == "ok" and results["p32"] == "failed", results
    assert all(results.get(c, "failed") == "failed" for c in ("p33", "p34")), results  # not started, or failed
    assert [r.case for r in collect(out) if r.status == "ok"] == ["p31"]
    assert not list(out.rglob(".tmp-*")) and not (out / "p32.nii.gz").exists()

    monkeypatch.undo()  # space freed: the rerun finishes the rest, p31 stays done
    again = run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False))
    assert again.output_error == "" and [r.status for r in again.results] == ["ok"] * 4
    assert sorted(p.name for p in (out / RECORDS).iterdir()) == [f"p{s}.json" for s in (31, 32, 33, 34)]
