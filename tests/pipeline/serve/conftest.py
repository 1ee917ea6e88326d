"""Fixtures of the service tests: a PACS on a free port, a service process, synthetic series (never patient data)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.nodes import Pacs, ServiceProcess, free_port


@pytest.fixture
def pacs() -> Iterator[Pacs]:
    node = Pacs(free_port()).start()
    yield node
    node.stop()


@pytest.fixture
def start_service(tmp_path: Path, model_folder: Path) -> Iterator:
    """``start_service(*options)``: a service on a free port storing in tmp_path/storage, results in tmp_path/out;
    every service started is stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def start(*options: str, storage: Path | None = None, port: int | None = None) -> ServiceProcess:
        service = ServiceProcess(storage or tmp_path / "storage", tmp_path / "out", model_folder,
                                 port or free_port(), *options)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
