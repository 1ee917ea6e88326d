"""Faults with real processes: kill -9 while receiving and while segmenting, a destination down then up across a
restart, SIGTERM once (the case in hand finished, exit 0; an association open aborted) and twice (at once, exit
130). Every series is delivered exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from atriumseg.pipeline.batch.report import RECORDS
from atriumseg.pipeline.io.writing import temporary_path
from serve.nodes import Pacs, free_port, mr_series, send, volume_series, wait_until

pytestmark = pytest.mark.slow
BIG = (256, 256, 48)  # a series that takes a second or more to segment, so a test can act while it does


def _segmenting(service, key: str) -> bool:
    return service.state(key).get("status") == "segmenting"


def _delivered_once(pacs: Pacs, files: list[Path], seconds: float, service) -> None:
    wait_until(lambda: pacs.segs(), seconds, "the SEG at the PACS", service)
    time.sleep(1.0)  # time for a second, wrong delivery to show
    (seg,) = pacs.segs()
    referenced = {item.ReferencedSOPInstanceUID for series in seg.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f).SOPInstanceUID for f in files}


def test_kill_9_while_receiving_then_the_sender_sends_again_gives_one_seg(tmp_path: Path, pacs, start_service) -> None:
    files = mr_series(tmp_path / "series", "1.2.826.0.1.3680043.8.498.81")
    options = ("--send-to", f"PACS@127.0.0.1:{pacs.port}", "--allow", "SCANNER", "--series-timeout", "3")
    service = start_service(*options)
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(pydicom.dcmread(files[0]).SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", service.port, ae_title="ATRIUMSEG")
    assert [assoc.send_c_store(pydicom.dcmread(f)).Status for f in files[:5]] == [0] * 5
    service.kill9()  # mid-association
    assoc.abort()
    stored = sorted(p.name for p in (service.storage / "series" / "1.2.826.0.1.3680043.8.498.81").iterdir())
    assert len(stored) == 5 and not any(n.startswith(".") for n in stored)
    again = start_service(*options, storage=service.storage, port=service.port)
    assert send(files, again.port) == [0] * len(files)  # the scanner sends the series again
    _delivered_once(pacs, files, 120, again)


def test_kill_9_while_segmenting_then_restart_gives_one_seg(tmp_path: Path, pacs, start_service) -> None:
    files = volume_series(tmp_path / "series", BIG, "1.2.826.0.1.3680043.8.498.82")
    options = ("--send-to", f"PACS@127.0.0.1:{pacs.port}", "--allow", "SCANNER", "--series-timeout", "0")
    service = start_service(*options)
    assert send(files, service.port) == [0] * len(files)
    wait_until(lambda: _segmenting(service, "1.2.826.0.1.3680043.8.498.82"), 60, "segmenting", service)
    service.kill9()
    assert pacs.segs() == []
    again = start_service(*options, storage=service.storage, port=service.port)
    _delivered_once(pacs, files, 120, again)
    assert again.state("1.2.826.0.1.3680043.8.498.82")["status"] == "segmented"


def test_a_destination_down_gets_the_seg_once_it_is_up_even_after_a_restart(tmp_path: Path, start_service) -> None:
    files = mr_series(tmp_path / "series", "1.2.826.0.1.3680043.8.498.83")
    pacs = Pacs(port=free_port())
    options = ("--send-to", f"PACS@127.0.0.1:{pacs.port}", "--allow", "SCANNER", "--series-timeout", "0")
    service = start_service(*options)
    assert send(files, service.port) == [0] * len(files)
    wait_until(lambda: "SEG not delivered to PACS" in service.log(), 120, "a failed delivery", service)
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log()
    assert len(list((service.storage / "outbox").glob("*.json"))) == 1
    pacs.start()
    try:
        again = start_service(*options, storage=service.storage, port=service.port)
        _delivered_once(pacs, files, 60, again)
        wait_until(lambda: not list((service.storage / "outbox").iterdir()), 10, "an empty outbox", again)
    finally:
        pacs.stop()


def test_sigterm_finishes_the_case_in_hand_and_a_second_stops_at_once(tmp_path: Path, pacs, start_service) -> None:
    first, second, third = (volume_series(tmp_path / name, BIG, f"1.2.826.0.1.3680043.8.498.8{seed}", seed=seed)
                            for seed, name in ((4, "a"), (5, "b"), (6, "c")))
    options = ("--send-to", f"PACS@127.0.0.1:{pacs.port}", "--allow", "SCANNER", "--series-timeout", "0")
    service = start_service(*options)
    assert send(first + second, service.port) == [0] * (2 * BIG[2])  # both complete at once: one waits
    wait_until(lambda: _segmenting(service, "1.2.826.0.1.3680043.8.498.84"), 60, "segmenting", service)
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log()
    assert service.state("1.2.826.0.1.3680043.8.498.84")["status"] == "segmented"
    assert service.state("1.2.826.0.1.3680043.8.498.85")["status"] == "complete"  # left for the next start
    assert len(pacs.segs()) == 1

    again = start_service(*options, storage=service.storage, port=service.port)
    wait_until(lambda: len(pacs.segs()) == 2, 120, "the waiting series' SEG after the restart", again)
    assert send(third, again.port) == [0] * BIG[2]
    wait_until(lambda: _segmenting(again, "1.2.826.0.1.3680043.8.498.86"), 60, "segmenting", again)
    again.signal(signal.SIGTERM)
    wait_until(lambda: again.log().count("finishing the case in hand") == 2, 10, "the first SIGTERM handled", again)
    again.signal(signal.SIGTERM)
    started = time.monotonic()
    assert again.wait() == 130 and time.monotonic() - started < 5, again.log()
    assert again.state("1.2.826.0.1.3680043.8.498.86")["status"] == "segmenting"
    # what it may have been writing when stopped at once (its own, if any, and one planted in each folder)
    for folder in (service.storage / "state", service.output / RECORDS):
        _temporary_of(again.popen.pid, folder / "x.json")
    leftovers = [p for folder in (service.storage, service.output) for p in folder.rglob(".tmp-*")]
    last = start_service(*options, storage=service.storage, port=service.port)
    wait_until(lambda: len(pacs.segs()) == 3, 120, "the interrupted series' SEG", last)
    assert all(not p.exists() for p in leftovers)  # temporaries of the process stopped at once are cleaned


def test_sigterm_aborts_an_association_left_open_and_the_service_exits(tmp_path: Path, start_service) -> None:
    files = mr_series(tmp_path / "series", "1.2.826.0.1.3680043.8.498.87")
    service = start_service("--allow", "SCANNER", "--series-timeout", "600")
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(pydicom.dcmread(files[0]).SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", service.port, ae_title="ATRIUMSEG")
    try:
        assert assoc.send_c_store(pydicom.dcmread(files[0])).Status == 0
        service.signal(signal.SIGTERM)  # the scanner keeps its association open
        assert service.wait(30) == 0, service.log()
        wait_until(lambda: assoc.is_aborted, 5, "the scanner told of the abort")
        assert "stopping: 1 open association(s) aborted" in service.log()
    finally:
        assoc.abort()


def _temporary_of(pid: int, path: Path) -> Path:
    """A half-written temporary of ``path`` as process ``pid`` of this machine names it."""
    mine = temporary_path(path)
    theirs = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{pid}-", 1))
    theirs.write_bytes(b"{half")
    return theirs
