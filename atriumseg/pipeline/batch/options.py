"""How a batch runs: :class:`BatchOptions` and the formats it accepts, torch-free so the CLI reads its defaults
without loading a model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from atriumseg.pipeline.analysis.body_size import BodySize

DICOM_SEG = "dicom-seg"
MASK_FORMATS = ("nii.gz", "same", DICOM_SEG)
MESH_FORMATS = ("stl", "obj", "vtk")
MESH_FRAMES = ("RAS", "LPS")


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs; ``shard`` is (index, count) and ``workers`` the number of cases read ahead.

    ``fmt`` is one of :data:`MASK_FORMATS`: 'nii.gz', 'same' (the input's own format) or 'dicom-seg';
    ``mesh`` one of :data:`MESH_FORMATS` (or None: no mesh) in the world frame ``mesh_frame``;
    ``patients`` maps case names to body sizes that override the DICOM tags (``--patients``);
    ``anonymous`` leaves the study identifiers out of the report.
    """

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
    patients: Mapping[str, BodySize] = field(default_factory=dict)
    anonymous: bool = False
