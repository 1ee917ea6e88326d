"""The outbox: SEGs owed per destination, a doubling wait after each failure, a newer SEG replacing an older one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from atriumseg.pipeline.io.writing import temporary_path
from atriumseg.pipeline.serve.courier import Courier
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.state import SEGMENTED, Ledger
from atriumseg.pipeline.serve.storage import Storage

PACS, ARCHIVE = "PACS@127.0.0.1:4242", "ARCHIVE@10.0.0.2:104"


def _seg(tmp_path: Path, name: str, content: bytes = b"seg") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_a_seg_is_owed_to_each_destination_and_its_copy_goes_when_nothing_owes_it(tmp_path: Path) -> None:
    outbox = Outbox(Storage(tmp_path / "st"))
    outbox.put("1.2.3", _seg(tmp_path, "a.dcm"), "9.1", [PACS, ARCHIVE])
    owed = outbox.deliveries()
    assert {(d.key, d.destination, d.seg_uid) for d in owed} == {("1.2.3", PACS, "9.1"), ("1.2.3", ARCHIVE, "9.1")}
    assert outbox.seg_file("9.1").read_bytes() == b"seg"
    outbox.done(owed[0])
    assert outbox.seg_file("9.1").exists()
    outbox.done(owed[1])
    assert not outbox.seg_file("9.1").exists() and outbox.deliveries() == []


def test_each_failure_doubles_the_wait_up_to_the_longest(tmp_path: Path) -> None:
    outbox = Outbox(Storage(tmp_path / "st"), retry_seconds=(5.0, 30.0))
    outbox.put("1.2.3", _seg(tmp_path, "a.dcm"), "9.1", [PACS])
    delivery = outbox.deliveries()[0]
    waits = []
    for _ in range(5):
        delivery = outbox.failed(delivery, "connection refused", now=1000.0)
        waits.append(delivery.next_try - 1000.0)
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]
    stored = outbox.deliveries()[0]
    assert stored.attempts == 5 and stored.last_error == "connection refused"
    assert outbox.due(now=1029.0) == [] and outbox.due(now=1030.0) == [stored]


def test_a_newer_seg_of_the_series_replaces_the_one_still_waiting(tmp_path: Path) -> None:
    outbox = Outbox(Storage(tmp_path / "st"))
    outbox.put("1.2.3", _seg(tmp_path, "old.dcm", b"old"), "9.1", [PACS])
    old = outbox.deliveries()[0]
    outbox.put("1.2.3", _seg(tmp_path, "new.dcm", b"new"), "9.2", [PACS])
    assert [d.seg_uid for d in outbox.deliveries()] == ["9.2"]
    assert not outbox.seg_file("9.1").exists() and outbox.seg_file("9.2").read_bytes() == b"new"
    outbox.failed(old, "late failure of the old SEG")  # a send of the old SEG that ends after the replacement
    assert outbox.deliveries()[0].seg_uid == "9.2" and outbox.deliveries()[0].attempts == 0


def test_a_send_of_the_old_seg_ending_after_a_newer_one_was_put_leaves_the_newer_owed(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    outbox, ledger = Outbox(storage), Ledger(storage)
    ledger.update("1.2.3", status=SEGMENTED, seg_uid="9.1")
    outbox.put("1.2.3", _seg(tmp_path, "old.dcm", b"old"), "9.1", [PACS])
    old = outbox.deliveries()[0]
    ledger.update("1.2.3", seg_uid="9.2")  # the worker made a newer SEG while the old one was being sent
    outbox.put("1.2.3", _seg(tmp_path, "new.dcm", b"new"), "9.2", [PACS])
    Courier(outbox, ledger, [PACS], "ATRIUMSEG", send=lambda *args: None).deliver(old)
    assert [d.seg_uid for d in outbox.deliveries()] == ["9.2"] and outbox.seg_file("9.2").read_bytes() == b"new"
    state = ledger.get("1.2.3")
    assert state.sent == {PACS: "9.1"} and not state.done and not state.delivered([PACS])
    assert outbox.done(old) is False and outbox.deliveries()[0].seg_uid == "9.2"


def test_files_another_writer_is_still_writing_are_not_read_nor_removed(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    storage = Storage(tmp_path / "st")
    outbox = Outbox(storage)
    outbox.put("1.2.3", _seg(tmp_path, "a.dcm"), "9.1", [PACS, ARCHIVE])
    entry = sorted(storage.outbox_root.glob("[!.]*.json"))[0]
    temporary_path(entry).write_bytes(entry.read_bytes())  # a newer copy about to be renamed over it
    seg_in_writing = temporary_path(outbox.seg_file("9.2"))
    seg_in_writing.write_bytes(b"half a SEG")
    Ledger(storage).update("1.2.3", status=SEGMENTED)
    state = storage.state_root / "1.2.3.json"
    temporary_path(state).write_bytes(state.read_bytes()[:20])  # half written
    assert len(outbox.deliveries()) == 2
    outbox.done(outbox.deliveries()[0])  # drops the SEG copies nothing owes: not one still being written
    assert seg_in_writing.exists()
    with caplog.at_level(logging.WARNING):
        Ledger(storage).load()
    assert "unreadable" not in caplog.text
