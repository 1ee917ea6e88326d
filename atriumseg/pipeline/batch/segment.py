"""The model's part of a case: read it, segment it, and gather what its outputs and record are made from.

:class:`SegmentedCase` is the one object a case's later steps receive (:mod:`.export`); each per-case
quantity (the anatomical affine, the voxel count, the volume) is computed here once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from atriumseg.geometry import affine_with_axcodes
from atriumseg.pipeline.analysis.quality import border_entropy, quality_flags
from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.patient import patient_fields
from atriumseg.pipeline.batch.plan import PlannedCase
from atriumseg.pipeline.batch.report import OK, CaseResult
from atriumseg.pipeline.io.geometry import voxel_volume_ml
from atriumseg.pipeline.io.volumes import Volume, read_image, repaired_header

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.segmenter import Segmenter

# What fails one case (its record says why, with the error's type) without stopping the run: any error of its own,
# a bug met by one odd case included; signals (KeyboardInterrupt) and a full disk (Halt) are what stop a run.
CASE_ERRORS = (Exception,)


@dataclass(frozen=True)
class SegmentedCase:
    """One case after the network: its plan, its volume, the affine that describes its anatomy (the header's,
    or ``assume_orientation``'s when the header lies; masks keep the file's own header, measurements, meshes
    and QC views use this one), the mask and probabilities on the input grid, and its result so far."""

    planned: PlannedCase
    volume: Volume
    anatomy: np.ndarray
    mask: np.ndarray
    probabilities: np.ndarray
    result: CaseResult

    def timed(self, seconds: float) -> SegmentedCase:
        """The same case with the seconds it took recorded."""
        return replace(self, result=replace(self.result, seconds=seconds))


class CaseSegmenter(Protocol):
    """The per-case step a batch calls for each case it has read (:func:`segment_case` by default); a
    wrapper around it observes, slows or interrupts cases (tests, services) without touching the runner."""

    def __call__(
        self, segmenter: Segmenter, planned: PlannedCase, volume: Volume, options: BatchOptions
    ) -> SegmentedCase: ...


def anatomical_affine(volume: Volume, assume_orientation: str | None) -> np.ndarray:
    """The affine that describes the anatomy: the header's, or the declared orientation's when it lies."""
    affine = volume.tensor.affine.numpy()
    return affine_with_axcodes(affine, assume_orientation) if assume_orientation else affine


def read_case(case: InputCase) -> Volume:
    """The volume of a case (a file, or one series of a DICOM folder), or an ImageReadError saying why not."""
    return read_image(case.path, case.series_uid, case.name)


def segment_case(segmenter: Segmenter, planned: PlannedCase, volume: Volume, options: BatchOptions) -> SegmentedCase:
    """Segment one read case (the model refuses a volume too large once resampled, naming its file) and fill in the
    result's volume, quality flags, uncertainty (with ``tta``) and patient columns."""
    case = planned.case
    anatomy = anatomical_affine(volume, options.assume_orientation)
    seg = segmenter.segment(volume.tensor, assume_orientation=options.assume_orientation, tta=options.tta)
    prob, raw, mask = seg.probabilities[0].numpy(), seg.raw[0].numpy(), seg.mask[0].numpy()
    voxel_ml = voxel_volume_ml(volume.tensor.affine.numpy())
    voxels = int(mask.sum())
    result = CaseResult(
        case=case.name, input=str(case.path), output=str(planned.outputs.mask), status=OK,
        volume_ml=voxels * voxel_ml, voxels=voxels,
        flags=quality_flags(raw, mask, voxel_ml) + tuple(filter(None, [repaired_header(volume)])),
        uncertainty=border_entropy(prob, mask) if options.tta else float("nan"),
    )
    result = replace(result, **patient_fields(case, result.volume_ml, options.patients, options.anonymous))
    return SegmentedCase(planned, volume, anatomy, mask, prob, result)
