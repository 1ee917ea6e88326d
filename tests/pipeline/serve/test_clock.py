"""The service's clock (completion and --keep-days): a pass that raises is logged and the next series still
completes."""

from __future__ import annotations

from pathlib import Path

import pydicom

from atriumseg.pipeline.serve import service as service_module
from atriumseg.pipeline.serve.options import ServeOptions
from atriumseg.pipeline.serve.service import Service
from atriumseg.pipeline.serve.state import COMPLETE
from serve.nodes import mr_series, wait_until


def test_a_clock_pass_that_raises_is_logged_and_the_clock_goes_on(tmp_path: Path, monkeypatch) -> None:
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", allow_any=True, series_timeout=0.0)
    service = Service(lambda folder, is_series, redo: [], options)
    for path in mr_series(tmp_path / "in", "1.2.5")[:2]:
        service.storage.write_instance("1.2.5", pydicom.dcmread(path))
    service.ledger.touch("1.2.5", 0.0, "SCANNER")
    real, failures = service.completion.complete_due, iter([OSError(28, "No space left on device")])

    def complete_due_once_failing(now=None):
        for err in failures:
            raise err
        return real(now)

    monkeypatch.setattr(service.completion, "complete_due", complete_due_once_failing)
    monkeypatch.setattr(service_module, "PAUSE_AFTER_ERROR", 0.05)
    thread = service_module.threading.Thread(target=service._clock)
    thread.start()
    try:
        wait_until(lambda: service.jobs.waiting() == ["1.2.5"], 10, "the series completed after the error")
        assert thread.is_alive() and service.ledger.get("1.2.5").status == COMPLETE
    finally:
        service.stopping.set()
        thread.join(5)
