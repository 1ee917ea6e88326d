"""One input segmented exactly as ``atriumseg segment`` segments it, in the calling thread: the public seam
for services that receive cases one at a time (the DICOM node) and for code that drives cases itself.

:func:`process_input` takes one input (an image file, or a folder holding one or more DICOM series, each
its own case), a loaded :class:`~atriumseg.pipeline.inference.segmenter.Segmenter` and the
:class:`~atriumseg.pipeline.batch.options.BatchOptions`, and goes through the same steps as
:func:`~atriumseg.pipeline.batch.runner.run_batch`, from the same code: discovery (:mod:`.inputs`), output
names, refusals, locks and resumption (:mod:`.plan`), reading and the model (:mod:`.segment`), outputs
between two records (:mod:`.export`), and the merged report (``report.csv``, ``report.json``, the QC sheet)
rebuilt from every record of the output folder. Only the threads differ: run_batch reads ahead and writes
behind, this reads, segments and writes one case after the other.

Example (a service receiving series folders)::

    segmenter = Segmenter.from_path(None)  # loaded once
    options = BatchOptions(output=Path("out"), fmt="dicom-seg", show_progress=False)
    outcome = process_input(Path("incoming/series-1"), segmenter, options)
    if outcome.output_error:  # disk full or unwritable folder: nothing later can be written either
        ...
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from atriumseg.pipeline.batch.export import export_case, log_segmented
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.plan import PlannedCase, claim, prepare
from atriumseg.pipeline.batch.records import (
    BatchOutcome,
    Halt,
    Settled,
    conclude,
    failed_result,
    record_settled,
    store_and_release,
)
from atriumseg.pipeline.batch.report import CaseResult
from atriumseg.pipeline.batch.segment import CASE_ERRORS, CaseSegmenter, read_case, segment_case

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.segmenter import Segmenter


def run_case(
    planned: PlannedCase, segmenter: Segmenter, options: BatchOptions, halt: Halt,
    segment: CaseSegmenter = segment_case,
) -> CaseResult:
    """Claim, read, segment and export one planned case of a prepared run (``options.output`` absolute); the
    case's final result, its record written. A case another process holds or a complete one is settled
    without running."""
    lock = claim(planned, options)
    if isinstance(lock, Settled):
        return record_settled(options.output, lock, halt)
    started = time.perf_counter()
    try:
        segmented = segment(segmenter, planned, read_case(planned.case), options)
    except CASE_ERRORS as err:
        failed = failed_result(planned.case, err, time.perf_counter() - started)
        return store_and_release(options.output, failed, halt, lock)
    segmented = segmented.timed(time.perf_counter() - started)
    log_segmented(segmented)
    return export_case(segmented, options, halt, lock)


def process_input(
    source: str | Path, segmenter: Segmenter, options: BatchOptions, segment: CaseSegmenter = segment_case
) -> BatchOutcome:
    """Segment every case of one input into ``options.output`` as ``atriumseg segment SOURCE`` would.

    Writes each case's mask (or DICOM SEG with ``fmt='dicom-seg'``), its extra outputs and records, and
    rebuilds the folder's report; returns the :class:`~.records.BatchOutcome` of this input's cases (``ok``,
    ``skipped`` or ``failed`` with a reason; never raises for one case). Raises
    :class:`~atriumseg.pipeline.io.writing.OutputFolderError` when the output folder is unusable; a full disk
    met later ends the call with ``output_error`` set. ``segment`` is the per-case model step
    (:func:`~.segment.segment_case`), replaceable by a wrapper. No signal handlers are installed.
    """
    prepared = prepare([source], options)
    options, halt = prepared.options, prepared.halt
    results = list(prepared.settled)
    for planned in prepared.todo:
        if halt.reason:
            break
        results.append(run_case(planned, segmenter, options, halt, segment))
    return conclude(options.output, results, False, halt, options.qc)
