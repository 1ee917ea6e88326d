"""Series states on disk: written on every change of status (not per instance), rebuilt after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from atriumseg.pipeline.serve.state import COMPLETE, RECEIVING, SEGMENTED, SEGMENTING, Ledger
from atriumseg.pipeline.serve.storage import Storage
from serve.nodes import mr_series


def _on_disk(storage: Storage, key: str) -> dict:
    return json.loads((storage.state_root / f"{key}.json").read_text())


def test_a_state_survives_a_new_ledger_field_for_field(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    ledger = Ledger(storage)
    written = ledger.update("1.2.3", status=SEGMENTED, sent={"PACS@h:1": "9.9"}, callers=("SCANNER",), volume_ml=81.5,
                            send_to=("PACS@h:1", "ARCHIVE@h:2"))
    older = {k: v for k, v in written.to_dict().items() if k != "send_to"}  # a state written before send_to was
    (storage.state_root / "4.5.6.json").write_text(json.dumps({**older, "key": "4.5.6"}))
    again = Ledger(storage)
    again.load()
    assert again.get("1.2.3") == written and again.get("4.5.6").send_to is None
    assert again.get("1.2.3").destinations(["ARCHIVE@h:2", "NEW@h:3"]) == ["ARCHIVE@h:2"]
    assert again.get("4.5.6").destinations(["ARCHIVE@h:2", "NEW@h:3"]) == ["ARCHIVE@h:2", "NEW@h:3"]


def test_instances_of_a_receiving_series_touch_memory_only_and_a_resent_series_is_written(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    ledger = Ledger(storage)
    ledger.touch("1.2.3", 100.0, "SCANNER", study_uid="7.7")
    ledger.touch("1.2.3", 105.0, "SCANNER")
    assert ledger.get("1.2.3").last_received == 105.0
    assert _on_disk(storage, "1.2.3")["last_received"] == 100.0 and _on_disk(storage, "1.2.3")["study_uid"] == "7.7"
    ledger.update("1.2.3", status=SEGMENTED)
    ledger.touch("1.2.3", 200.0, "SCANNER")
    assert _on_disk(storage, "1.2.3")["status"] == RECEIVING and _on_disk(storage, "1.2.3")["first_received"] == 200.0


def test_the_worker_result_sets_the_status_only_if_nothing_came_meanwhile(tmp_path: Path) -> None:
    ledger = Ledger(Storage(tmp_path))
    ledger.update("a", status=SEGMENTING)
    assert ledger.settle("a", SEGMENTED, seg_uid="1.1").status == SEGMENTED
    ledger.update("b", status=RECEIVING)
    kept = ledger.settle("b", SEGMENTED, seg_uid="1.2")
    assert kept.status == RECEIVING and kept.seg_uid == "1.2"


def test_the_worker_claims_a_series_only_while_it_is_complete(tmp_path: Path) -> None:
    ledger = Ledger(Storage(tmp_path))
    ledger.update("a", status=COMPLETE)
    ledger.touch("a", 100.0, "SCANNER")  # a late instance between completion and the worker taking it
    assert ledger.claim("a") is None and ledger.get("a").status == RECEIVING
    ledger.update("b", status=COMPLETE)
    assert ledger.claim("b").status == SEGMENTING
    assert ledger.claim("b").status == SEGMENTING  # a series segmenting when the service stopped is taken again
    assert ledger.claim("unknown") is None


def test_recovery_finds_series_without_state_and_requeues_in_completion_order(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    files = mr_series(tmp_path / "src", "1.2.840.1")
    for path in files[:3]:
        storage.write_instance("1.2.840.1", pydicom.dcmread(path))  # received, then killed before any state
    ledger = Ledger(storage)
    ledger.update("2.2", status=SEGMENTING, completed=50.0)
    ledger.update("1.1", status=COMPLETE, completed=40.0)
    ledger.update("3.3", status=SEGMENTED, completed=10.0)
    after = Ledger(storage)
    after.load()
    queued = after.recover()
    assert [s.key for s in queued] == ["1.1", "2.2"]
    orphan = after.get("1.2.840.1")
    assert orphan.status == RECEIVING and orphan.series_uid == "1.2.840.1"
    assert orphan.last_received >= max(p.stat().st_mtime for p in storage.instances("1.2.840.1"))


def test_an_unreadable_state_is_rebuilt_from_the_instances(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.write_instance("1.2.840.2", pydicom.dcmread(mr_series(tmp_path / "src", "1.2.840.2")[0]))
    (storage.state_root / "1.2.840.2.json").write_text("{truncated")
    ledger = Ledger(storage)
    ledger.load()
    ledger.recover()
    assert ledger.get("1.2.840.2").status == RECEIVING
