"""``atriumseg status``: the states read from the storage folder, whether the service runs or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from atriumseg.cli import EXIT_OK, EXIT_USAGE, main
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.state import FAILED, SEGMENTED, Ledger
from atriumseg.pipeline.serve.status import format_status, read_status
from atriumseg.pipeline.serve.storage import Storage


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
    with pytest.raises(FileNotFoundError, match="not an atriumseg storage folder"):
        read_status(tmp_path / "typo")
    assert main(["status", str(tmp_path / "typo")]) == EXIT_USAGE and not (tmp_path / "typo").exists()
