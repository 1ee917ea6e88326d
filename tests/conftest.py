"""Fixtures: a stand-in model whose output is a known function of its input, and a tiny model trained once.

Tests of geometry, batch runs and the CLI use the stand-in (exact, fast, independent of any training);
only the tests about learning use the trained tiny model (``tiny_model``). Tests that take the ``device``
fixture run on the device chosen with ``--device`` or ``ATRIUMSEG_TEST_DEVICE`` (default cpu, so CI is
unchanged); asked for a GPU where torch sees none, they are skipped with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import standin_model, tiny_config, train, write_msd_dataset

from atriumseg.pipeline.inference.segmenter import Segmenter

DEVICE_VARIABLE = "ATRIUMSEG_TEST_DEVICE"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", default=None,
        help=f"device of the tests that take the device fixture: cpu (default), cuda, cuda:N; or set {DEVICE_VARIABLE}",
    )


def chosen_device(config: pytest.Config) -> torch.device:
    """``--device``, else ``$ATRIUMSEG_TEST_DEVICE``, else cpu; a name of no cpu or cuda device is a usage error."""
    name = config.getoption("--device") or os.environ.get(DEVICE_VARIABLE) or "cpu"
    refusal = f"--device / {DEVICE_VARIABLE} {name!r} is not a device the tests run on; use cpu, cuda or cuda:N"
    try:
        chosen = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(refusal) from err
    if chosen.type not in ("cpu", "cuda"):
        raise pytest.UsageError(refusal)
    return chosen


def pytest_configure(config: pytest.Config) -> None:
    chosen_device(config)  # refuse a bad name before collecting anything
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # pytest -n: the test processes share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device the device tests run on; skips them when it is a GPU that torch does not see."""
    chosen = chosen_device(pytestconfig)
    name = str(chosen)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{name} asked for, but torch {torch.__version__} sees no CUDA device")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        pytest.skip(f"{name} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return chosen


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
