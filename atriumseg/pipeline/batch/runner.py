"""Segmenting many inputs: every case ends ``ok``, ``skipped`` or ``failed`` with a reason, never a crash.

Reading runs ahead in background threads and writing trails behind in another, so the model is
rarely idle; each case's record is written as soon as it ends; SIGINT/SIGTERM stop the run
cleanly between cases (a second signal interrupts at once; atomic writes still leave no
partial file).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.batch.inputs import InputCase, discover, in_shard, target_path
from atriumseg.pipeline.io.geometry import voxel_volume_ml
from atriumseg.pipeline.io.volumes import ImageReadError, Volume, read_image
from atriumseg.pipeline.io.writing import write_image
from atriumseg.pipeline.analysis.quality import border_entropy, quality_flags
from atriumseg.pipeline.batch.report import (
    FAILED,
    OK,
    SKIPPED,
    CaseResult,
    collect,
    read_record,
    write_record,
    write_report,
)
from atriumseg.transforms.orientation import affine_with_axcodes

log = logging.getLogger(__name__)

_CASE_ERRORS = (ImageReadError, RuntimeError, ValueError, OSError, MemoryError)
MAX_QUEUED_WRITES = 2  # segmented cases waiting for the writer thread


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs; ``shard`` is (index, count) and ``workers`` the number of cases read ahead."""

    output: Path
    fmt: str = "nii.gz"
    overwrite: bool = False
    assume_orientation: str | None = None
    qc: bool = False
    workers: int = 2
    shard: tuple[int, int] = (0, 1)
    show_progress: bool = True
    tta: bool = False
    probabilities: bool = False
    mesh: str | None = None
    mesh_frame: str = "RAS"


@dataclass(frozen=True)
class BatchOutcome:
    """The results of this run, and whether a signal stopped it early."""

    results: list[CaseResult]
    interrupted: bool


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


def _extras(volume: Volume, mask: np.ndarray, prob: np.ndarray, target: Path, options: BatchOptions) -> list[str]:
    """Probability map and surface mesh beside the mask, when asked for."""
    from atriumseg.pipeline.analysis.mesh import mesh, save_mesh

    written = []
    stem = target.name[: -len("".join(target.suffixes))] if target.suffixes else target.name
    suffix = "".join(target.suffixes)
    if options.probabilities:
        prob_path = target.with_name(f"{stem}_probabilities{suffix}")
        written.append(str(write_image(volume.geometry.image(prob.astype(np.float32)), prob_path, options.overwrite)))
    if options.mesh and mask.any():
        surface = mesh(mask, _anatomical_affine(volume, options), frame=options.mesh_frame)
        written.append(str(save_mesh(surface, target.with_name(f"{stem}.{options.mesh}"), options.overwrite)))
    return written


def _finish(
    volume: Volume, mask: np.ndarray, prob: np.ndarray, target: Path, result: CaseResult, options: BatchOptions
) -> CaseResult:
    """Write the mask and its extras, measure it, draw the QC picture, then the record; runs on the writer thread."""
    from atriumseg.pipeline.analysis.measure import measure
    from atriumseg.pipeline.batch.qc import overlay_png

    try:
        write_image(volume.geometry.image(mask), target, overwrite=options.overwrite)
        result = replace(result, extra_outputs=tuple(_extras(volume, mask, prob, target, options)))
        if mask.any():
            result = replace(result, **measure(mask, _anatomical_affine(volume, options)).row())
        if options.qc:
            png = Path(options.output) / "qc" / f"{result.case}.png"
            title = f"{result.case}: {result.volume_ml:.1f} mL" + (f" [{'; '.join(result.flags)}]" if result.flags else "")
            overlay_png(volume.tensor[0].numpy(), _anatomical_affine(volume, options), mask, png, title=title)
            result = replace(result, qc_png=str(png))
    except _CASE_ERRORS as err:
        result = replace(result, output="", status=FAILED, reason=f"{result.input}: cannot write output: {err}")
        log.error("failed %s", result.reason)
    write_record(options.output, result)
    return result


def _record_only(out_dir: Path, result: CaseResult) -> CaseResult:
    write_record(out_dir, result)
    return result


def _segment(
    segmenter: Segmenter, case: InputCase, volume: Volume, options: BatchOptions
) -> tuple[np.ndarray, np.ndarray, CaseResult]:
    seg = segmenter.segment(volume.tensor, assume_orientation=options.assume_orientation, tta=options.tta)
    prob, raw, mask = seg.probabilities[0].numpy(), seg.raw[0].numpy(), seg.mask[0].numpy()
    voxel_ml = voxel_volume_ml(volume.tensor.affine.numpy())
    voxels = int(mask.sum())
    result = CaseResult(
        case=case.name, input=str(case.path), output="", status=OK, volume_ml=voxels * voxel_ml, voxels=voxels,
        flags=quality_flags(raw, mask, voxel_ml),
        uncertainty=border_entropy(prob, mask) if options.tta else float("nan"),
    )
    return mask, prob, result


def _plan(cases: list[InputCase], options: BatchOptions) -> tuple[list[tuple[InputCase, Path]], list[CaseResult]]:
    """Cases to run with their targets, and the ones settled already (existing output, name collision)."""
    todo, settled, claimed = [], [], {}
    for case in cases:
        target = target_path(case, options.output, options.fmt)
        if target in claimed:
            settled.append(CaseResult(case.name, str(case.path), "", FAILED,
                                      f"{case.path}: output name {target.name} collides with {claimed[target]}"))
            continue
        claimed[target] = case.path
        if target.exists() and not options.overwrite:
            previous = read_record(options.output, case.name)
            settled.append(previous if previous and previous.status == OK else CaseResult(
                case.name, str(case.path), str(target), SKIPPED, "output exists (use --overwrite to replace it)"))
            continue
        todo.append((case, target))
    return todo, settled


def run_batch(segmenter: Segmenter, inputs: list[str | Path], options: BatchOptions) -> BatchOutcome:
    """Segment every case found in ``inputs`` (this shard's share) into ``options.output``."""
    index, count = options.shard
    cases, strays = discover(inputs)
    cases = [c for c in cases if in_shard(c, index, count)]
    results = [CaseResult(p.path.name, str(p.path), "", SKIPPED, p.reason) for p in strays if index == 0]
    todo, settled = _plan(cases, options)
    results += settled
    for r in results:
        if r.status != OK:
            write_record(options.output, r)
        (log.error if r.status == FAILED else log.info)("%s %s: %s", r.status, r.input, r.reason or "done earlier")
    interrupted = False
    with stop_on_signals() as stop, ThreadPoolExecutor(max(1, options.workers)) as readers, ThreadPoolExecutor(
        1
    ) as writer:
        ahead: deque[tuple[InputCase, Path, Future[Volume]]] = deque()
        queue = iter(todo)

        def refill() -> None:
            while len(ahead) < max(1, options.workers) + 1:
                item = next(queue, None)
                if item is None:
                    return
                ahead.append((*item, readers.submit(_load, item[0])))

        refill()
        pending: list[Future[CaseResult]] = []
        bar = tqdm(total=len(todo), desc="segmenting", unit="case", disable=not options.show_progress)
        while ahead:
            if stop.is_set():
                interrupted = True
                for _, _, future in ahead:
                    future.cancel()
                break
            case, target, future = ahead.popleft()
            refill()
            started = time.perf_counter()
            try:
                volume = future.result()
                mask, prob, result = _segment(segmenter, case, volume, options)
            except _CASE_ERRORS as err:
                reason = str(err) if isinstance(err, ImageReadError) else f"{case.path}: {type(err).__name__}: {err}"
                failed = CaseResult(case.name, str(case.path), "", FAILED, reason, time.perf_counter() - started)
                pending.append(writer.submit(_record_only, options.output, failed))
                log.error("failed %s", reason)
            else:
                result = replace(result, output=str(target), seconds=time.perf_counter() - started)
                while sum(not p.done() for p in pending) >= MAX_QUEUED_WRITES:  # bound memory held by the writer
                    next(p for p in pending if not p.done()).result()
                pending.append(writer.submit(_finish, volume, mask, prob, target, result, options))
                log.info("ok %s -> %s (%.1f s, %.1f mL%s)", case.path, target, result.seconds, result.volume_ml,
                         f"; {', '.join(result.flags)}" if result.flags else "")
            bar.update()
        bar.close()
        results += [p.result() for p in pending]
    if interrupted:
        log.warning("stopped early: %d case(s) not started; run again to finish them", len(todo) - len(pending))
    rebuild_report(options.output, qc=options.qc)
    return BatchOutcome(sorted(results, key=lambda r: r.case), interrupted)


def rebuild_report(out_dir: Path, qc: bool | None = None) -> list[CaseResult]:
    """Merge every record in ``out_dir`` into report.csv/json (and the QC contact sheet when pictures exist)."""
    results = collect(out_dir)
    write_report(out_dir, results)
    qc_dir = Path(out_dir) / "qc"
    if qc or (qc is None and qc_dir.is_dir()):
        from atriumseg.pipeline.batch.qc import contact_sheet

        entries = [
            (r.case, Path(r.qc_png) if r.qc_png else qc_dir / f"{r.case}.png",
             r.status + (f" | flags: {'; '.join(r.flags)}" if r.flags else "") + (f" | {r.reason}" if r.reason else ""))
            for r in results
        ]
        contact_sheet(entries, qc_dir / "index.html")
    return results
