"""``atriumseg status``: the states read from the storage folder, whether the service runs or not; ``status.json``
rewritten when something changed, and otherwise only as a heartbeat."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from atriumseg.cli import EXIT_OK, EXIT_USAGE, main
from atriumseg.pipeline.serve import service as service_module
from atriumseg.pipeline.serve.options import ServeOptions
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.service import Service
from atriumseg.pipeline.serve.state import FAILED, SEGMENTED, Ledger
from atriumseg.pipeline.serve.status import format_status, read_status
from atriumseg.pipeline.serve.storage import Storage
from atriumseg.pipeline.serve.worker import Job
from serve.nodes import wait_until


def test_the_report_reads_every_state_the_outbox_and_refusals(tmp_path: Path, capsys) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    ledger.update("1.1", status=SEGMENTED, instances=120, volume_ml=88.25, seg_uid="9.1", sent={"PACS@h:1": "9.1"})
    ledger.update("2.2", status=FAILED, instances=1, reason="a single slice: not a 3D series")
    seg = tmp_path / "seg.dcm"
    seg.write_bytes(b"x")
    Outbox(storage).put("3.3", seg, "9.3", ["PACS@h:1"])
    storage.refuse("not an MR image", caller="SCANNER")
    storage.write_json(storage.status_file, {"service": {"pid": 2 ** 22 + 12345, "updated": "2026-01-01T00:00:00"}})
    report = read_status(storage.root)
    assert not report["service"]["running"] and report["refused"] == 1
    assert [s["key"] for s in report["series"]] == ["1.1", "2.2"] and report["outbox"][0]["key"] == "3.3"
    text = format_status(report)
    assert "service: not running (last seen 2026-01-01T00:00:00)" in text
    assert "88.2" in text and "PACS@h:1" in text and "a single slice" in text and "refused objects: 1" in text
    assert main(["status", str(storage.root)]) == EXIT_OK and "1.1" in capsys.readouterr().out


def test_a_folder_that_is_not_a_storage_is_a_usage_error_and_is_left_untouched(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="typo: no such folder; give the --storage folder"):
        read_status(tmp_path / "typo")
    assert main(["status", str(tmp_path / "typo")]) == EXIT_USAGE and not (tmp_path / "typo").exists()
    with pytest.raises(FileNotFoundError, match="not an atriumseg storage folder"):
        read_status(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileNotFoundError, match="afile: exists and is not a folder; give the --storage folder"):
        read_status(tmp_path / "afile")


@pytest.mark.parametrize(("address", "watch", "said"), [
    ("127.0.0.1:11112", "", "(pid 7, ATRIUMSEG on 127.0.0.1:11112)"),
    ("", "/in", "(pid 7, no DICOM door, watching /in)"),
])
def test_a_running_service_says_where_it_listens_and_what_it_watches(address: str, watch: str, said: str) -> None:
    service = {"running": True, "pid": 7, "ae_title": "ATRIUMSEG", "address": address, "watch": watch}
    text = format_status({"service": service, "series": [], "outbox": [], "refused": 0})
    assert text.startswith(f"service: running {said}; in hand: -; queued: 0")


def test_status_json_is_written_on_a_change_and_otherwise_only_as_a_heartbeat(tmp_path: Path, monkeypatch) -> None:
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", allow_any=True)
    service = Service(lambda path, is_series, redo: [], options)
    status = service.storage.status_file
    monkeypatch.setattr(service_module, "STATUS_LOOK", 0.1)
    thread = threading.Thread(target=service._status)
    thread.start()
    try:
        wait_until(status.exists, 5, "the first status.json")
        written = status.stat().st_mtime_ns
        time.sleep(1.5)  # nothing changed: no write (it was rewritten every second)
        assert status.stat().st_mtime_ns == written
        service.ledger.update("1.2.3", status=FAILED, reason="a single slice")
        wait_until(lambda: [s["key"] for s in json.loads(status.read_text())["series"]] == ["1.2.3"], 5, "the change")
        service.jobs.put(Job(path=tmp_path / "in" / "p1.nii.gz"))  # queued work changes no state, but shows
        wait_until(lambda: json.loads(status.read_text())["service"]["queue"], 5, "the queue in status.json")
        written = status.stat().st_mtime_ns
        monkeypatch.setattr(service_module, "STATUS_HEARTBEAT", 0.5)
        wait_until(lambda: status.stat().st_mtime_ns != written, 5, "a heartbeat write without a change")
    finally:
        service.stopping.set()
        thread.join(5)
