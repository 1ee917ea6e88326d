"""One input segmented exactly as ``atriumseg segment`` segments it: the same outputs, records and report rows.

The batch package is the one place that knows what a case writes; the service hands its public per-case seam
(:func:`~atriumseg.pipeline.batch.case.process_input`) one input at a time, with the model it keeps loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from atriumseg.pipeline.batch.case import process_input
from atriumseg.pipeline.batch.options import DICOM_SEG, BatchOptions
from atriumseg.pipeline.batch.plan import PlannedCase
from atriumseg.pipeline.batch.report import OK, SKIPPED, CaseResult
from atriumseg.pipeline.batch.segment import SegmentedCase, segment_case
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import Volume
from atriumseg.pipeline.io.writing import OutputFolderError
from atriumseg.pipeline.serve.options import ServeOptions


class OutputUnusable(OSError):
    """OUT cannot take the outputs (disk full, read-only): the case is retried later, not failed for good."""


def segment_input(segmenter: Segmenter, path: Path, options: BatchOptions) -> list[CaseResult]:
    """Segment one file or folder into ``options.output`` with an already loaded model; one result per case found
    (a DICOM folder may hold several series). A case settled from its complete record in OUT (not redone without
    ``overwrite``) comes back ``skipped``, "done earlier", so that an earlier result is never reported as made now.
    Raises :class:`OutputUnusable` when OUT cannot be written."""
    segmented: set[str] = set()

    def segment(model: Segmenter, planned: PlannedCase, volume: Volume, settings: BatchOptions) -> SegmentedCase:
        segmented.add(planned.case.name)
        return segment_case(model, planned, volume, settings)

    try:
        outcome = process_input(path, segmenter, replace(options, show_progress=False), segment)
    except OutputFolderError as err:
        raise OutputUnusable(str(err)) from err
    if outcome.output_error:
        raise OutputUnusable(outcome.output_error)
    return [r if r.status != OK or r.case in segmented else _done_earlier(r) for r in outcome.results]


def _done_earlier(result: CaseResult) -> CaseResult:
    return replace(result, status=SKIPPED, reason=f"done earlier ({result.volume_ml:.1f} mL -> {result.output}); "
                   "not redone")


def series_options(options: ServeOptions) -> BatchOptions:
    """How a series of the DICOM door is written: a DICOM SEG (what is sent), redone when its instances change."""
    return BatchOptions(output=options.output, fmt=DICOM_SEG, overwrite=True, qc=options.qc,
                        probabilities=options.probabilities, mesh=options.mesh)


def watch_options(options: ServeOptions, redo: bool) -> BatchOptions:
    """How a watch-folder input is written: as ``atriumseg segment DIR -o OUT`` writes it, with ``--overwrite`` when
    ``redo`` (the input changed after it was handed on: its outputs are out of date)."""
    return BatchOptions(output=options.output, overwrite=redo, qc=options.qc, probabilities=options.probabilities,
                        mesh=options.mesh)


def segment_with(segmenter: Segmenter, options: ServeOptions) -> Callable[[Path, bool, bool], list[CaseResult]]:
    """The worker's segment call: ``(input, is a DICOM-door series, redo) -> results`` with the loaded model."""
    as_series = series_options(options)
    as_watched = {redo: watch_options(options, redo) for redo in (False, True)}
    return lambda path, series, redo: segment_input(segmenter, path, as_series if series else as_watched[redo])
