"""atriumseg: left-atrium segmentation of 3D cardiac MRI with a slice-wise U-Net on MONAI.

The public names are imported lazily, so ``import atriumseg`` (and the CLI's ``--help``) stays
instant; torch and MONAI load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from atriumseg._version import __version__

_PUBLIC = {
    "segment": "atriumseg.api",
    "measure": "atriumseg.api",
    "mesh": "atriumseg.api",
    "save_mesh": "atriumseg.pipeline.analysis.mesh",
    "load_model": "atriumseg.models.checkpoint",
    "save_model": "atriumseg.models.checkpoint",
    "ModelCard": "atriumseg.models.card",
    "Segmenter": "atriumseg.pipeline.inference.segmenter",
    "Segmentation": "atriumseg.pipeline.inference.segmenter",
    "run_batch": "atriumseg.pipeline.batch.runner",
    "process_input": "atriumseg.pipeline.batch.case",
    "BatchOptions": "atriumseg.pipeline.batch.options",
    "evaluate": "atriumseg.pipeline.evaluation.evaluate",
    "train": "atriumseg.pipeline.training.trainer",
    "TrainConfig": "atriumseg.pipeline.training.config",
    "average_models": "atriumseg.pipeline.training.average",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'atriumseg' has no attribute {name!r}")
