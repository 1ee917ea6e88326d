"""Fixtures: a stand-in model whose output is a known function of its input, and a tiny model trained once.

Tests of geometry, batch runs and the CLI use the stand-in (exact, fast, independent of any training);
only the tests about learning use the trained tiny model (``tiny_model``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import standin_model, tiny_config, train, write_msd_dataset

from atriumseg.pipeline.inference.segmenter import Segmenter


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_msd_dataset(tmp_path_factory.mktemp("msd") / "Synthetic", [100, 101, 102, 103])


@pytest.fixture(scope="session")
def tiny_model(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a tiny U-Net trained on three synthetic volumes (validated on a fourth)."""
    return train(tiny_config(synthetic_dataset, tmp_path_factory.mktemp("run")), show_progress=False).best


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder holding the stand-in network (see ``helpers.standin_network``)."""
    return standin_model(tmp_path_factory.mktemp("standin") / "model")


@pytest.fixture(scope="session")
def segmenter(model_folder: Path) -> Segmenter:
    return Segmenter.from_path(model_folder, device="cpu")
