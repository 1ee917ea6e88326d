"""Storing each case's outcome as it ends, and what ends a run early.

A record is written as soon as a case is settled (:func:`store`); a full disk or an unwritable output folder
is no single case's failure: :class:`Halt` remembers the first such error, from any thread, and the run stops
with the records it could write and that reason in :attr:`BatchOutcome.output_error`.
"""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.locks import CaseLock
from atriumseg.pipeline.batch.report import FAILED, CaseResult, rebuild_report, write_record
from atriumseg.pipeline.io.volumes import ImageReadError

log = logging.getLogger(__name__)

# Write errors that no later case can escape: the run stops instead of failing every case in turn.
FOLDER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


@dataclass(frozen=True)
class BatchOutcome:
    """The results of this run, whether a signal stopped it early, and, when the output folder could not
    be written (disk full, read-only), the reason the run ended before its last case (else empty)."""

    results: list[CaseResult]
    interrupted: bool
    output_error: str = ""


@dataclass(frozen=True)
class Settled:
    """A case decided without running it; ``record`` says whether its result is stored."""

    result: CaseResult
    record: bool


class Halt:
    """The first write error that leaves the output folder unusable; set from any thread."""

    def __init__(self) -> None:
        self.reason = ""
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason

    def check(self, err: BaseException, what: str) -> bool:
        """Stop the run if ``err`` is a full disk or an unwritable folder; whether it is."""
        if not (isinstance(err, OSError) and err.errno in FOLDER_ERRNOS):
            return False
        self.stop(f"{what}: {err.strerror or err}; the run stopped early (free space or fix the folder's "
                  "permissions, then run again to finish)")
        return True


def store(out_dir: Path, result: CaseResult, halt: Halt, key: str | None = None) -> None:
    """Write a record; a full disk or unwritable folder stops the run, any other error is logged."""
    try:
        write_record(out_dir, result, key)
    except OSError as err:
        if not halt.check(err, f"cannot write the record of {result.case}"):
            log.error("cannot write the record of %s: %s", result.case, err)


def log_settled(result: CaseResult) -> None:
    """One line for a case settled without running: failed cases as errors, skipped ones as information."""
    (log.error if result.status == FAILED else log.info)(
        "%s %s: %s", result.status, result.input, result.reason or "done earlier"
    )


def record_settled(out_dir: Path, settled: Settled, halt: Halt) -> CaseResult:
    """Store (when it is to be stored) and log a case settled without running; its result."""
    if settled.record:
        store(out_dir, settled.result, halt)
    log_settled(settled.result)
    return settled.result


def store_and_release(out_dir: Path, result: CaseResult, halt: Halt, lock: CaseLock) -> CaseResult:
    """Store the record of a case that ends without outputs, then give its lock up; the result."""
    try:
        store(out_dir, result, halt)
    finally:
        lock.release()
    return result


def conclude(out_dir: Path, results: list[CaseResult], interrupted: bool, halt: Halt, qc: bool) -> BatchOutcome:
    """Rebuild the folder's report from every record (a failure to write it ends the run with its reason) and
    sum the run up."""
    try:
        rebuild_report(out_dir, qc=qc)
    except OSError as err:
        halt.stop(f"cannot write the report in {out_dir}: {err.strerror or err}")
    return BatchOutcome(sorted(results, key=lambda r: r.case), interrupted, halt.reason)


def failed_result(case: InputCase, err: Exception, seconds: float) -> CaseResult:
    """The record of a case that could not be read or segmented, its reason logged."""
    reason = str(err) if isinstance(err, ImageReadError) else f"{case.path}: {type(err).__name__}: {err}"
    log.error("failed %s", reason, exc_info=err if log.isEnabledFor(logging.DEBUG) else None)  # -v: traceback
    return CaseResult(case.name, str(case.path), "", FAILED, reason, seconds)
