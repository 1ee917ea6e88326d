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
from atriumseg.pipeline.batch.report import CaseResult
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.writing import OutputFolderError
from atriumseg.pipeline.serve.options import ServeOptions


class OutputUnusable(OSError):
    """OUT cannot take the outputs (disk full, read-only): the case is retried later, not failed for good."""


def segment_input(segmenter: Segmenter, path: Path, options: BatchOptions) -> list[CaseResult]:
    """Segment one file or folder into ``options.output`` with an already loaded model; one result per case found
    (a DICOM folder may hold several series). Raises :class:`OutputUnusable` when OUT cannot be written."""
    try:
        outcome = process_input(path, segmenter, replace(options, show_progress=False))
    except OutputFolderError as err:
        raise OutputUnusable(str(err)) from err
    if outcome.output_error:
        raise OutputUnusable(outcome.output_error)
    return outcome.results


def series_options(options: ServeOptions) -> BatchOptions:
    """How a series of the DICOM door is written: a DICOM SEG (what is sent), redone when its instances change."""
    return BatchOptions(output=options.output, fmt=DICOM_SEG, overwrite=True, qc=options.qc,
                        probabilities=options.probabilities, mesh=options.mesh)


def watch_options(options: ServeOptions) -> BatchOptions:
    """How a watch-folder input is written: as ``atriumseg segment DIR -o OUT`` writes it."""
    return BatchOptions(output=options.output, qc=options.qc, probabilities=options.probabilities,
                        mesh=options.mesh)


def segment_with(segmenter: Segmenter, options: ServeOptions) -> Callable[[Path, bool], list[CaseResult]]:
    """The worker's segment call: ``(input, is a DICOM-door series) -> results`` with the loaded model."""
    as_series, as_watched = series_options(options), watch_options(options)
    return lambda path, series: segment_input(segmenter, path, as_series if series else as_watched)
