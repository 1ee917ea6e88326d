"""Writing a segmented case's outputs: mask (or DICOM SEG), probability map, mesh, measurements, QC picture.

The first record, written before any output, says the case was interrupted and lists the outputs to come:
what a process killed halfway leaves is truthful, and the next run knows the files are its own. The last
record, written after every output, says how the case ended; the case's lock is released after it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from atriumseg.pipeline.batch.locks import CaseLock
from atriumseg.pipeline.batch.options import DICOM_SEG, BatchOptions
from atriumseg.pipeline.batch.records import Halt, store
from atriumseg.pipeline.batch.report import FAILED, INTERRUPTED, OK, CaseResult, outputs, read_record, write_record
from atriumseg.pipeline.batch.segment import CASE_ERRORS, SegmentedCase
from atriumseg.pipeline.io.writing import write_image

log = logging.getLogger(__name__)


def write_mask(segmented: SegmentedCase, path: Path, fmt: str) -> None:
    """The mask as a DICOM SEG on the series' own files, or as an image with the input's geometry."""
    case, volume = segmented.planned.case, segmented.volume
    if fmt == DICOM_SEG:
        from atriumseg.pipeline.io.dicom_seg import write_dicom_seg
        from atriumseg.pipeline.io.readers import series_files

        write_dicom_seg(segmented.mask, volume.geometry, series_files(case.path, case.series_uid), path,
                        overwrite=True)
    else:
        write_image(volume.geometry.image(segmented.mask), path, overwrite=True)


def _outputs_and_measurements(segmented: SegmentedCase, options: BatchOptions) -> CaseResult:
    """Probability map and mesh beside the mask, the mask's measurements and its QC picture: the result with
    what was written and measured. The surface is meshed once, for the file and the surface area alike."""
    from atriumseg.pipeline.analysis.measure import measure
    from atriumseg.pipeline.analysis.mesh import mesh, save_mesh

    planned, mask, result = segmented.planned.outputs, segmented.mask, segmented.result
    written, surface = [], None
    if planned.probabilities is not None:
        image = segmented.volume.geometry.image(segmented.probabilities.astype("float32"))
        written.append(str(write_image(image, planned.probabilities, overwrite=True)))
    if mask.any():
        surface = mesh(mask, segmented.anatomy, frame=options.mesh_frame) if planned.mesh is not None else None
        if surface is not None:
            written.append(str(save_mesh(surface, planned.mesh, overwrite=True)))
        row = measure(mask, segmented.anatomy, surface).row()
        result = replace(result, **{k: v for k, v in row.items() if k != "volume_ml"})  # volume: counted once
    result = replace(result, extra_outputs=tuple(written))
    if planned.qc_png is not None:
        from atriumseg.pipeline.analysis.overlay import overlay_png

        flags = f" [{'; '.join(result.flags)}]" if result.flags else ""
        overlay_png(segmented.volume.tensor[0].numpy(), segmented.anatomy, mask, planned.qc_png,
                    title=f"{result.case}: {result.volume_ml:.1f} mL{flags}")
        result = replace(result, qc_png=str(planned.qc_png))
    return result


def export_case(segmented: SegmentedCase, options: BatchOptions, halt: Halt, lock: CaseLock) -> CaseResult:
    """Write every output of a segmented case between its two records, then release its lock; its final result.

    An output that cannot be written fails the case with the reason; a full disk or unwritable folder also
    stops the run (``halt``). Once the case is ``ok``, the outputs an earlier run's record listed that this run
    did not write (a mesh it was not asked for, one an empty mask has none of) are named in a warning: they are
    left in place, and the report no longer lists them.
    """
    result, planned = segmented.result, segmented.planned.outputs
    previous = read_record(options.output, result.case)
    extras = tuple(str(p) for p in (planned.probabilities, planned.mesh) if p is not None)
    failed = replace(result, status=FAILED, reason=INTERRUPTED, extra_outputs=extras, qc_png=str(planned.qc_png or ""))
    try:
        try:
            write_record(options.output, failed)  # lists every output, so a rerun may replace what this one wrote
            write_mask(segmented, planned.mask, options.fmt)
            result = _outputs_and_measurements(segmented, options)
        except CASE_ERRORS as err:
            halt.check(err, f"cannot write the outputs of {result.case}")
            result = replace(failed, reason=f"{result.input}: cannot write output: {type(err).__name__}: {err}")
            log.error("failed %s", result.reason, exc_info=err if log.isEnabledFor(logging.DEBUG) else None)
        store(options.output, result, halt)
        if result.status == OK and previous is not None:
            _warn_leftovers(previous, result)
    finally:
        lock.release()
    return result


def _warn_leftovers(previous: CaseResult, result: CaseResult) -> None:
    """Name the files ``previous`` (an earlier run's record of the case) lists as outputs and ``result`` does not.

    They are never removed: a folder copied with its records, or another case now writing that name, would make
    a removal take files that are not this case's to take."""
    written = {os.path.realpath(p) for p in outputs(result)}
    left = [str(p) for p in outputs(previous) if os.path.realpath(p) not in written and os.path.isfile(p)]
    if left:
        log.warning("%s: left in place from an earlier run, not written by this one and no longer in the report: "
                    "%s", result.case, ", ".join(left))


def log_segmented(segmented: SegmentedCase) -> None:
    """The line a case that went through the model leaves in the log."""
    result = segmented.result
    log.info("ok %s -> %s (%.1f s, %.1f mL%s)", result.input, result.output, result.seconds, result.volume_ml,
             f"; {', '.join(result.flags)}" if result.flags else "")
