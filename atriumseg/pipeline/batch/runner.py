"""Segmenting many inputs: every case ends ``ok``, ``skipped`` or ``failed`` with a reason, never a crash.

Reading runs ahead in background threads and writing trails behind in another, so the model is
rarely idle; each case's record is written as soon as it ends; SIGINT/SIGTERM stop the run
cleanly between cases (a second signal interrupts at once; atomic writes still leave no
partial file).

The rules a run keeps (README, "Batch processing"):

- an output is never written over an input of the run (real paths compared, every file of a DICOM
  folder included), whatever ``overwrite`` says: such a case fails with the reason;
- discovery never enters the output folder and leaves out every file runs wrote there;
- a case is locked (:mod:`.locks`) from before it is read until its record is written; a case another
  process holds is skipped with "being processed by PID n", and no record is written for it;
- a complete case (:func:`~.report.is_complete`) is never redone without ``overwrite``; any other case
  is (re)done, replacing the outputs its own record lists (all of its outputs when its record cannot be
  read); a file at an output path that no record of the case claims is kept, and the case skipped,
  unless ``overwrite``;
- a volume that would exceed the size bound once resampled is refused before resampling;
- a full disk or an unwritable output folder ends the run early with the records it could write and
  the reason in :attr:`BatchOutcome.output_error`.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atriumseg.pipeline.analysis.quality import border_entropy, quality_flags
from atriumseg.pipeline.batch.inputs import (
    CaseOutputs,
    InputCase,
    Skip,
    Stray,
    case_outputs,
    discover,
    in_shard,
    input_files,
)
from atriumseg.pipeline.batch.locks import LOCKS, CaseBusy, CaseLock, lock_case
from atriumseg.pipeline.batch.options import DICOM_SEG, BatchOptions
from atriumseg.pipeline.batch.patient import patient_fields
from atriumseg.pipeline.batch.report import (
    FAILED,
    INTERRUPTED,
    OK,
    RECORDS,
    REPORT_FILES,
    SKIPPED,
    CaseResult,
    collect,
    is_complete,
    outputs,
    read_record,
    record_path,
    write_record,
    write_report,
)
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.geometry import voxel_volume_ml
from atriumseg.pipeline.io.volumes import ImageReadError, Volume, check_resampled_size, read_image
from atriumseg.pipeline.io.writing import check_output_folder, remove_stale_temporaries, write_image
from atriumseg.transforms.axcodes import affine_with_axcodes

log = logging.getLogger(__name__)

_CASE_ERRORS = (ImageReadError, RuntimeError, ValueError, OSError, MemoryError)
# Write errors that no later case can escape: the run stops instead of failing every case in turn.
_FOLDER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
MAX_QUEUED_WRITES = 2  # segmented cases waiting for the writer thread
QC_INDEX = Path("qc") / "index.html"


@dataclass(frozen=True)
class BatchOutcome:
    """The results of this run, whether a signal stopped it early, and, when the output folder could not
    be written (disk full, read-only), the reason the run ended before its last case (else empty)."""

    results: list[CaseResult]
    interrupted: bool
    output_error: str = ""


class _Halt:
    """The first write error that leaves the output folder unusable; set from any thread."""

    def __init__(self) -> None:
        self.reason = ""
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason

    def check(self, err: BaseException, what: str) -> bool:
        """Stop the run if ``err`` is a full disk or an unwritable folder; whether it is."""
        if not (isinstance(err, OSError) and err.errno in _FOLDER_ERRNOS):
            return False
        self.stop(f"{what}: {err.strerror or err}; the run stopped early (free space or fix the folder's "
                  "permissions, then run again to finish)")
        return True


@dataclass(frozen=True)
class _Settled:
    """A case decided without running it; ``record`` says whether its result is stored."""

    result: CaseResult
    record: bool


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


def _load(case: InputCase) -> Volume:
    return read_image(case.path, case.series_uid, case.name)


def _anatomical_affine(volume: Volume, options: BatchOptions) -> np.ndarray:
    """The affine that describes the anatomy: the header's, or the declared orientation's when it lies.

    Masks always keep the file's own header; measurements, meshes and QC views use this one.
    """
    affine = volume.tensor.affine.numpy()
    return affine_with_axcodes(affine, options.assume_orientation) if options.assume_orientation else affine


def _store(out_dir: Path, result: CaseResult, halt: _Halt, key: str | None = None) -> None:
    """Write a record; a full disk or unwritable folder stops the run, any other error is logged."""
    try:
        write_record(out_dir, result, key)
    except OSError as err:
        if not halt.check(err, f"cannot write the record of {result.case}"):
            log.error("cannot write the record of %s: %s", result.case, err)


def _extras(
    volume: Volume, mask: np.ndarray, prob: np.ndarray, planned: CaseOutputs, options: BatchOptions
) -> list[str]:
    """Probability map and surface mesh beside the mask, when asked for."""
    from atriumseg.pipeline.analysis.mesh import mesh, save_mesh

    written = []
    if planned.probabilities is not None:
        image = volume.geometry.image(prob.astype(np.float32))
        written.append(str(write_image(image, planned.probabilities, overwrite=True)))
    if planned.mesh is not None and mask.any():
        surface = mesh(mask, _anatomical_affine(volume, options), frame=options.mesh_frame)
        written.append(str(save_mesh(surface, planned.mesh, overwrite=True)))
    return written


def _write_mask(case: InputCase, volume: Volume, mask: np.ndarray, path: Path, fmt: str) -> None:
    """The mask as a DICOM SEG on the series' own files, or as an image with the input's geometry."""
    if fmt == DICOM_SEG:
        from atriumseg.pipeline.io.dicom_seg import series_files, write_dicom_seg

        write_dicom_seg(mask, volume.geometry, series_files(case.path, case.series_uid), path, overwrite=True)
    else:
        write_image(volume.geometry.image(mask), path, overwrite=True)


def _finish(
    case: InputCase, volume: Volume, mask: np.ndarray, prob: np.ndarray, planned: CaseOutputs, result: CaseResult,
    options: BatchOptions, halt: _Halt, lock: CaseLock,
) -> CaseResult:
    """Write the mask and its extras, measure it, draw the QC picture, then the record; runs on the writer thread.

    The first record, written before any output, says the case was interrupted and lists the outputs to
    come: what a process killed halfway leaves is truthful, and the next run knows the files are its own.
    """
    from atriumseg.pipeline.analysis.measure import measure
    from atriumseg.pipeline.batch.qc import overlay_png

    try:
        try:
            extras = tuple(str(p) for p in (planned.probabilities, planned.mesh) if p is not None)
            write_record(options.output, replace(result, status=FAILED, reason=INTERRUPTED, extra_outputs=extras,
                                                 qc_png=str(planned.qc_png or "")))
            _write_mask(case, volume, mask, planned.mask, options.fmt)
            result = replace(result, extra_outputs=tuple(_extras(volume, mask, prob, planned, options)))
            if mask.any():
                result = replace(result, **measure(mask, _anatomical_affine(volume, options)).row())
            if planned.qc_png is not None:
                flags = f" [{'; '.join(result.flags)}]" if result.flags else ""
                title = f"{result.case}: {result.volume_ml:.1f} mL{flags}"
                overlay_png(volume.tensor[0].numpy(), _anatomical_affine(volume, options), mask, planned.qc_png,
                            title=title)
                result = replace(result, qc_png=str(planned.qc_png))
        except _CASE_ERRORS as err:
            halt.check(err, f"cannot write the outputs of {result.case}")
            result = replace(result, status=FAILED, reason=f"{result.input}: cannot write output: {err}")
            log.error("failed %s", result.reason)
        _store(options.output, result, halt)
    finally:
        lock.release()
    return result


def _store_and_release(out_dir: Path, result: CaseResult, halt: _Halt, lock: CaseLock) -> CaseResult:
    try:
        _store(out_dir, result, halt)
    finally:
        lock.release()
    return result


def _segment(
    segmenter: Segmenter, case: InputCase, volume: Volume, options: BatchOptions
) -> tuple[np.ndarray, np.ndarray, CaseResult]:
    pre = segmenter.card.preprocessing
    affine = _anatomical_affine(volume, options)
    check_resampled_size(volume.tensor, affine, pre.pixdim, pre.orientation, str(case.path))
    seg = segmenter.segment(volume.tensor, assume_orientation=options.assume_orientation, tta=options.tta)
    prob, raw, mask = seg.probabilities[0].numpy(), seg.raw[0].numpy(), seg.mask[0].numpy()
    voxel_ml = voxel_volume_ml(volume.tensor.affine.numpy())
    voxels = int(mask.sum())
    result = CaseResult(
        case=case.name, input=str(case.path), output="", status=OK, volume_ml=voxels * voxel_ml, voxels=voxels,
        flags=quality_flags(raw, mask, voxel_ml),
        uncertainty=border_entropy(prob, mask) if options.tta else float("nan"),
    )
    result = replace(result, **patient_fields(case, result.volume_ml, options.patients, options.anonymous))
    return mask, prob, result


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def _own_files(out_dir: Path) -> Skip:
    """What discovery leaves out: the output folder, its reports and every output its records list."""
    files = [out_dir / name for name in REPORT_FILES] + [out_dir / QC_INDEX]
    files += [p for record in collect(out_dir) for p in outputs(record)]
    return Skip(folders=frozenset({_real(out_dir)}), files=frozenset(map(_real, files)))


def _plan(
    cases: list[InputCase], options: BatchOptions
) -> tuple[list[tuple[InputCase, CaseOutputs]], list[tuple[InputCase, CaseResult, str | None]]]:
    """Cases to run with their outputs, and the ones refused: an output over an input of the run, or an output
    name another case claims first (recorded apart from that case, under ``CASE@hash``)."""
    protected = input_files(cases)
    todo, refused, claimed = [], [], {}
    for case in cases:
        try:
            planned = case_outputs(case, options.output, options.fmt, options.probabilities, options.mesh, options.qc)
        except ValueError as err:
            refused.append((case, CaseResult(case.name, str(case.path), "", FAILED, f"{case.path}: {err}"), None))
            continue
        over = next((p for p in planned.all() if _real(p) in protected), None)
        clash = next((p for p in planned.all() if p in claimed), None)
        if over is not None:
            reason = (f"{case.path}: its output {over} would overwrite an input of this run; "
                      "give an --output folder apart from the inputs")
            refused.append((case, CaseResult(case.name, str(case.path), "", FAILED, reason), None))
        elif clash is not None:
            reason = f"{case.path}: output name {clash.name} collides with {claimed[clash]}"
            key = f"{case.name}@{zlib.crc32(str(case.path).encode()):08x}"
            refused.append((case, CaseResult(case.name, str(case.path), "", FAILED, reason), key))
        else:
            claimed.update({p: case.path for p in planned.all()})
            todo.append((case, planned))
    return todo, refused


def _claim(case: InputCase, planned: CaseOutputs, options: BatchOptions) -> CaseLock | _Settled:
    """Lock a case and decide whether it runs: its lock to run it, or how it is settled without running."""
    try:
        lock = lock_case(options.output, case.name)
    except CaseBusy as busy:
        return _Settled(CaseResult(case.name, str(case.path), "", SKIPPED, f"{case.path}: {busy}"), record=False)
    if options.overwrite:
        return lock
    previous = read_record(options.output, case.name)
    if is_complete(previous):
        lock.release()
        return _Settled(previous, record=False)
    if previous is not None:
        own = {_real(p) for p in outputs(previous)}
    else:  # a record of this case that cannot be read still says the case's outputs are a run's own
        own = {_real(p) for p in planned.all()} if record_path(options.output, case.name).exists() else set()
    foreign = next((p for p in planned.all() if p.exists() and _real(p) not in own), None)
    if foreign is not None:
        lock.release()
        reason = f"{foreign} exists and no earlier run of this case wrote it (use --overwrite to replace it)"
        return _Settled(CaseResult(case.name, str(case.path), "", SKIPPED, reason), record=True)
    return lock


def _log_settled(result: CaseResult) -> None:
    (log.error if result.status == FAILED else log.info)(
        "%s %s: %s", result.status, result.input, result.reason or "done earlier"
    )


def _settle_at_start(
    out_dir: Path, strays: list[Stray], refused: list[tuple[CaseResult, str | None]], halt: _Halt
) -> list[CaseResult]:
    """Record and log what is settled before any case runs: strays and refused cases."""
    results = [CaseResult(s.path.name, str(s.path), "", SKIPPED, s.reason) for s in strays]
    for result in results:
        _store(out_dir, result, halt)
    for result, key in refused:
        _store(out_dir, result, halt, key)
        results.append(result)
    for result in results:
        _log_settled(result)
    return results


def _failed(case: InputCase, err: Exception, seconds: float) -> CaseResult:
    """The record of a case that could not be read or segmented, its reason logged."""
    reason = str(err) if isinstance(err, ImageReadError) else f"{case.path}: {type(err).__name__}: {err}"
    log.error("failed %s", reason)
    return CaseResult(case.name, str(case.path), "", FAILED, reason, seconds)


def run_batch(segmenter: Segmenter, inputs: list[str | Path], options: BatchOptions) -> BatchOutcome:
    """Segment every case found in ``inputs`` (this shard's share) into ``options.output``.

    Raises :class:`~atriumseg.pipeline.io.writing.OutputFolderError` before any work when the output folder
    is unusable; a full disk or unwritable folder met later ends the run with ``output_error`` set.
    """
    out = check_output_folder(options.output).absolute()
    options = replace(options, output=out)
    for folder in (out, out / RECORDS, out / "qc", out / LOCKS):
        remove_stale_temporaries(folder)
    index, count = options.shard
    cases, strays = discover(inputs, _own_files(out))
    planned, refused = _plan(cases, options)
    todo = [(c, o) for c, o in planned if in_shard(c, index, count)]
    halt = _Halt()
    results = _settle_at_start(out, strays if index == 0 else [],
                               [(r, key) for c, r, key in refused if in_shard(c, index, count)], halt)
    interrupted, taken = False, [0]  # taken: cases of ``todo`` claimed so far
    workers = max(1, options.workers)
    ahead: deque[tuple[InputCase, CaseOutputs, CaseLock, Future[Volume]]] = deque()
    with stop_on_signals() as stop, ThreadPoolExecutor(workers) as readers, ThreadPoolExecutor(1) as writer:
        queue = iter(todo)
        bar = tqdm(total=len(todo), desc="segmenting", unit="case", disable=not options.show_progress)

        def refill() -> None:
            while len(ahead) < workers + 1 and not (stop.is_set() or halt.reason):
                item = next(queue, None)
                if item is None:
                    return
                taken[0] += 1
                claim = _claim(*item, options)
                if isinstance(claim, _Settled):
                    results.append(claim.result)
                    if claim.record:
                        _store(out, claim.result, halt)
                    _log_settled(claim.result)
                    bar.update()
                    continue
                ahead.append((*item, claim, readers.submit(_load, item[0])))

        pending: list[Future[CaseResult]] = []
        try:
            refill()
            while ahead:
                if stop.is_set() or halt.reason:
                    interrupted = stop.is_set()
                    break
                case, planned_outputs, lock, future = ahead.popleft()
                refill()
                started = time.perf_counter()
                try:
                    volume = future.result()
                    mask, prob, result = _segment(segmenter, case, volume, options)
                except _CASE_ERRORS as err:
                    failed = _failed(case, err, time.perf_counter() - started)
                    pending.append(writer.submit(_store_and_release, out, failed, halt, lock))
                else:
                    result = replace(result, output=str(planned_outputs.mask), seconds=time.perf_counter() - started)
                    while sum(not p.done() for p in pending) >= MAX_QUEUED_WRITES:  # bound the writer's memory
                        next(p for p in pending if not p.done()).result()
                    pending.append(writer.submit(_finish, case, volume, mask, prob, planned_outputs, result, options,
                                                 halt, lock))
                    log.info("ok %s -> %s (%.1f s, %.1f mL%s)", case.path, planned_outputs.mask, result.seconds,
                             result.volume_ml, f"; {', '.join(result.flags)}" if result.flags else "")
                bar.update()
        finally:
            for _, _, lock, future in ahead:
                future.cancel()
                lock.release()
            bar.close()
        results += [p.result() for p in pending]
    if interrupted or halt.reason:
        left = len(todo) - taken[0] + len(ahead)
        log.warning("stopped early: %d case(s) not started; run again to finish them", left)
    try:
        rebuild_report(out, qc=options.qc)
    except OSError as err:
        halt.stop(f"cannot write the report in {out}: {err.strerror or err}")
    return BatchOutcome(sorted(results, key=lambda r: r.case), interrupted, halt.reason)


def rebuild_report(out_dir: Path, qc: bool | None = None) -> list[CaseResult]:
    """Merge every readable record in ``out_dir`` into report.csv/json (and the QC contact sheet when pictures
    exist); temporary files left by dead writers are removed first, and none is ever read as a record."""
    remove_stale_temporaries(Path(out_dir) / RECORDS)
    results = collect(out_dir)
    write_report(out_dir, results)
    qc_dir = Path(out_dir) / "qc"
    if qc or (qc is None and qc_dir.is_dir()):
        from atriumseg.pipeline.batch.qc import SheetEntry, contact_sheet

        entries = [
            SheetEntry(r.case, Path(r.qc_png) if r.qc_png else qc_dir / f"{r.case}.png",
                       r.status + (f" | flags: {'; '.join(r.flags)}" if r.flags else "")
                       + (f" | {r.reason}" if r.reason else ""),
                       flagged=bool(r.flags) or r.status == FAILED)
            for r in results
        ]
        contact_sheet(entries, Path(out_dir) / QC_INDEX)
    return results
