"""A series completes once every association that sent to it ended and nothing came for the series timeout."""

from __future__ import annotations

from pathlib import Path

import pydicom

from atriumseg.pipeline.serve.completion import Completion
from atriumseg.pipeline.serve.state import COMPLETE, RECEIVING, Ledger
from atriumseg.pipeline.serve.storage import Storage
from serve.nodes import mr_series


def test_completion_waits_for_the_association_to_end_and_then_for_the_timeout(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    completion = Completion(storage, ledger, timeout=5.0)
    for key, when, association in (("1.2.840.2", 100.0, 1), ("1.2.840.1", 90.0, 2)):
        for path in mr_series(tmp_path / key, key)[:4]:
            completion.received(association, key)
            storage.write_instance(key, pydicom.dcmread(path))
            ledger.touch(key, when, "SCANNER")
    assert completion.complete_due(now=200.0) == []  # both associations still open
    completion.ended(1)
    completion.ended(2)
    early = completion.complete_due(now=104.0)  # 14 s after one series' last instance, 4 s after the other's
    assert [s.key for s in early] == ["1.2.840.1"] and ledger.get("1.2.840.2").status == RECEIVING
    done = early + completion.complete_due(now=200.0)
    assert [s.key for s in done] == ["1.2.840.1", "1.2.840.2"]
    assert all(s.status == COMPLETE and s.instances == 4 and s.digest == storage.digest(s.key) for s in done)
    assert completion.complete_due(now=300.0) == []  # completed once


def test_a_zero_timeout_completes_at_release(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    completion = Completion(storage, ledger, timeout=0.0)
    completion.received(7, "1.2.3")
    ledger.touch("1.2.3", 50.0, "SCANNER")
    assert completion.complete_due(now=50.0) == []
    completion.ended(7)
    assert [s.key for s in completion.complete_due(now=50.0)] == ["1.2.3"]


def test_an_instance_arriving_after_the_look_for_due_series_keeps_the_series_receiving(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    completion = Completion(storage, ledger, timeout=5.0)
    files = mr_series(tmp_path / "1.2.9", "1.2.9")[:3]
    storage.write_instance("1.2.9", pydicom.dcmread(files[0]))
    ledger.touch("1.2.9", 100.0, "SCANNER")
    looked = ledger.all()

    def all_then_an_instance_arrives() -> list:
        completion.received(3, "1.2.9")  # another association starts sending right after the look
        storage.write_instance("1.2.9", pydicom.dcmread(files[1]))
        ledger.touch("1.2.9", 120.0, "SCANNER")
        return looked

    monkeypatch.setattr(ledger, "all", all_then_an_instance_arrives)
    assert completion.complete_due(now=200.0) == []
    assert ledger.get("1.2.9").status == RECEIVING and ledger.get("1.2.9").last_received == 120.0
    monkeypatch.undo()
    completion.ended(3)
    (done,) = completion.complete_due(now=200.0)
    assert done.status == COMPLETE and done.instances == 2
