"""How a model was made, as its card records it: the run's data, split, command and machine.

Each stage of training is summarised in the card's lineage (:mod:`atriumseg.models.lineage`).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from atriumseg.models.names import model_name
from atriumseg.pipeline.training.config import TrainConfig
from atriumseg.pipeline.training.splits import TrainingSet, split_record


def run_provenance(config: TrainConfig, sets: list[TrainingSet], device: torch.device, processes: int) -> dict:
    """What a card says about the run that trained it, before any epoch: data, split, command, machine."""
    return {
        "data": [
            {"dataset": s.dataset.name, "root": str(s.dataset.root), "header_orientation_fix": s.dataset.orientation,
             "weight": s.weight, "reference": s.dataset.reference, "licence": s.dataset.licence}
            for s in sets
        ],
        "split": split_record(sets, config.exclude),
        "command": config.command,
        "config": config_record(config),
        "machine": _machine(),
        "device": str(device),
        "processes": processes,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def config_record(config: TrainConfig) -> dict:
    """The run's settings as its card records them (JSON values; the starting model by :func:`model_name`)."""
    return {**{k: _jsonable(v) for k, v in asdict(config).items()}, "init": model_name(config.init)}


def _machine() -> str:
    cpu = f"{platform.machine()} {platform.processor() or ''}".strip()
    return f"{cpu} {torch.get_num_threads()} threads, {platform.system()}"


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
