"""Fixtures: a tiny model trained once per session on synthetic volumes, and a Segmenter around it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_config, train, write_msd_dataset

from atriumseg.pipeline.inference import Segmenter


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_msd_dataset(tmp_path_factory.mktemp("msd") / "Synthetic", [100, 101, 102, 103])


@pytest.fixture(scope="session")
def tiny_model(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a tiny U-Net overfitted to three synthetic volumes (validated on a fourth)."""
    return train(tiny_config(synthetic_dataset, tmp_path_factory.mktemp("run")), show_progress=False).best


@pytest.fixture(scope="session")
def segmenter(tiny_model: Path) -> Segmenter:
    return Segmenter.from_path(tiny_model, device="cpu")
