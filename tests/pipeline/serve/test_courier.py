"""Delivering the outbox to a real SCP: recorded once delivered, retried with a wait while the destination is
down, everything owed tried once more at a stop, deliveries already served dropped after a crash, a SEG owed
again when its deliveries were never written, only to the configured destinations it was made for."""

from __future__ import annotations

import logging
import threading
import time
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


def test_recovery_owes_a_seg_only_to_the_configured_destinations_it_was_made_for(tmp_path: Path, caplog) -> None:
    pacs, archive, gone = "PACS@127.0.0.1:4242", "ARCHIVE@10.0.0.2:104", "OLD@10.0.0.9:104"
    outbox, ledger, _, seg, uid = _parts(tmp_path, pacs)
    courier = Courier(outbox, ledger, [pacs, archive], "ATRIUMSEG")  # ARCHIVE added, OLD dropped since
    segmented = dict(status=SEGMENTED, seg_uid=uid, output=str(seg))
    ledger.update("made_for_pacs", send_to=(pacs,), **segmented)
    ledger.update("made_for_old", send_to=(gone, pacs), sent={pacs: uid}, **segmented)
    ledger.update("older_state", **segmented)  # written before send_to: owed to every configured destination
    ledger.update("older_purged", purged=True, **segmented)  # its instances gone: no new destination gets it
    outbox.put("made_for_old", seg, uid, [gone])
    with caplog.at_level(logging.WARNING):
        courier.recover()
    owed = {(d.key, d.destination) for d in outbox.deliveries()}
    assert owed == {("made_for_pacs", pacs), ("older_state", pacs), ("older_state", archive)}
    assert f"made_for_old: SEG {uid} dropped from the outbox: {gone} is no longer a --send-to" in caplog.text
    assert ledger.get("made_for_old").done > 0  # at every destination it is still owed to: its retention clock runs
    assert not ledger.get("made_for_pacs").done


def test_the_retention_clock_starts_once_the_destinations_a_seg_was_made_for_hold_it(tmp_path: Path) -> None:
    pacs = Pacs(free_port()).start()
    try:
        destination = f"PACS@127.0.0.1:{pacs.port}"
        outbox, ledger, _, seg, uid = _parts(tmp_path, destination)
        courier = Courier(outbox, ledger, [destination, "ARCHIVE@10.0.0.2:104"], "ATRIUMSEG")  # ARCHIVE added later
        ledger.update("1.2.840.77", status=SEGMENTED, seg_uid=uid, send_to=(destination,))
        outbox.put("1.2.840.77", seg, uid, [destination])
        courier.run_once()
    finally:
        pacs.stop()
    assert len(pacs.received) == 1 and ledger.get("1.2.840.77").done > 0


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
        service = Service(lambda path, is_series, redo: [], options)
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


def test_a_stop_tries_every_seg_owed_once_more_even_one_still_waiting_for_its_next_try(tmp_path: Path) -> None:
    pacs = Pacs(free_port())
    destination = f"PACS@127.0.0.1:{pacs.port}"
    (tmp_path / "in").mkdir()
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", watch=tmp_path / "in",
                           send_to=(Destination.parse(destination),), retry_seconds=(600.0, 600.0))
    service = Service(lambda path, is_series, redo: [], options)
    seg = mr_series(tmp_path / "series", "1.2.840.79")[0]
    uid = pydicom.dcmread(seg).SOPInstanceUID
    service.ledger.update("1.2.840.79", status=SEGMENTED, seg_uid=uid, send_to=(destination,))
    service.outbox.put("1.2.840.79", seg, uid, [destination])
    service.courier.run_once()  # the PACS is down: the next try is 10 minutes away
    assert service.outbox.deliveries()[0].next_try > time.time() + 500
    pacs.start()
    try:
        service.start()
        time.sleep(0.5)  # the courier's passes leave it: not due
        assert pacs.received == []
        service.stop()
    finally:
        pacs.stop()
    assert [d.SOPInstanceUID for d in pacs.received] == [uid] and service.outbox.deliveries() == []
    assert service.ledger.get("1.2.840.79").sent == {destination: uid}
