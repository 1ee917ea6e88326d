"""Delivering the outbox to a real SCP: recorded once delivered, retried with a wait while the destination is
down, deliveries already served dropped after a crash, a SEG owed again when its deliveries were never written."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom

from atriumseg.pipeline.serve.courier import Courier
from atriumseg.pipeline.serve.options import Destination, ServeOptions
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.service import Service
from atriumseg.pipeline.serve.state import SEGMENTED, Ledger
from atriumseg.pipeline.serve.storage import Storage
from serve.nodes import Pacs, free_port, mr_series, wait_until


def _parts(tmp_path: Path, destination: str) -> tuple[Outbox, Ledger, Courier, Path, str]:
    storage = Storage(tmp_path / "st")
    outbox, ledger = Outbox(storage, retry_seconds=(5.0, 60.0)), Ledger(storage)
    seg = mr_series(tmp_path / "series", "1.2.840.77")[0]  # any DICOM file travels the same way
    return outbox, ledger, Courier(outbox, ledger, [destination], "ATRIUMSEG"), seg, pydicom.dcmread(seg).SOPInstanceUID


def test_a_delivery_waits_while_the_destination_is_down_and_is_recorded_once_it_arrives(tmp_path: Path) -> None:
    pacs = Pacs(free_port())
    destination = f"PACS@127.0.0.1:{pacs.port}"
    outbox, ledger, courier, seg, uid = _parts(tmp_path, destination)
    ledger.update("1.2.840.77", status=SEGMENTED, seg_uid=uid)
    outbox.put("1.2.840.77", seg, uid, [destination])
    courier.run_once()
    (waiting,) = outbox.deliveries()
    assert waiting.attempts == 1 and "could not be reached" in waiting.last_error and waiting.next_try > 0
    assert ledger.get("1.2.840.77").sent == {}
    pacs.start()
    try:
        courier.run_once()
        assert outbox.deliveries() == [waiting]  # not due yet: nothing sent before its wait is over
        assert courier.deliver(waiting)
    finally:
        pacs.stop()
    assert [d.SOPInstanceUID for d in pacs.received] == [uid]
    state = ledger.get("1.2.840.77")
    assert state.sent == {destination: uid} and state.done > 0
    assert outbox.deliveries() == [] and not outbox.seg_file(uid).exists()


def test_recovery_drops_served_deliveries_and_owes_again_a_seg_never_put_in_the_outbox(tmp_path: Path) -> None:
    destination = "PACS@127.0.0.1:4242"
    outbox, ledger, courier, seg, uid = _parts(tmp_path, destination)
    outbox.put("served", seg, uid, [destination])
    ledger.update("served", status=SEGMENTED, seg_uid=uid, sent={destination: uid})  # died before the removal
    ledger.update("unsent", status=SEGMENTED, seg_uid=uid, output=str(seg))  # died before the outbox was written
    courier.recover()
    assert [(d.key, d.seg_uid) for d in outbox.deliveries()] == [("unsent", uid)]


def test_a_pass_that_raises_is_logged_and_the_courier_goes_on(tmp_path: Path, monkeypatch) -> None:
    destination = "PACS@127.0.0.1:4242"
    outbox, ledger, _, seg, uid = _parts(tmp_path, destination)
    sent: list[Path] = []
    courier = Courier(outbox, ledger, [destination], "ATRIUMSEG", send=lambda path, *rest: sent.append(path))
    ledger.update("1.2.840.77", status=SEGMENTED, seg_uid=uid)
    outbox.put("1.2.840.77", seg, uid, [destination])
    real_due, failures = outbox.due, iter([OSError(28, "No space left on device")])

    def due_once_failing(now=None):
        for err in failures:
            raise err
        return real_due(now)

    monkeypatch.setattr(outbox, "due", due_once_failing)
    monkeypatch.setattr("atriumseg.pipeline.serve.courier.PAUSE_AFTER_ERROR", 0.05)
    stop = threading.Event()
    thread = threading.Thread(target=courier.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: ledger.get("1.2.840.77").sent == {destination: uid}, 10, "the SEG delivered after the error")
        assert thread.is_alive() and len(sent) == 1
    finally:
        stop.set()
        thread.join(5)


def test_a_stop_waits_for_the_couriers_pass_so_a_seg_in_flight_is_not_sent_twice(tmp_path: Path) -> None:
    pacs = Pacs(free_port(), answer_after=1.0).start()
    try:
        destination = f"PACS@127.0.0.1:{pacs.port}"
        (tmp_path / "in").mkdir()
        options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", watch=tmp_path / "in",
                               send_to=(Destination.parse(destination),))
        service = Service(lambda path, is_series: [], options)
        seg = mr_series(tmp_path / "series", "1.2.840.78")[0]
        uid = pydicom.dcmread(seg).SOPInstanceUID
        service.ledger.update("1.2.840.78", status=SEGMENTED, seg_uid=uid)
        service.outbox.put("1.2.840.78", seg, uid, [destination])
        service.start()
        wait_until(lambda: pacs.received, 10, "the courier sending")
        service.stop()  # while the PACS has not answered yet
        assert len(pacs.received) == 1 and service.outbox.deliveries() == []
        assert service.ledger.get("1.2.840.78").sent == {destination: uid}
    finally:
        pacs.stop()
