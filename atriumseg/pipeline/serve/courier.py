"""Delivers the outbox: each SEG to each destination, retried with backoff while a destination is down or refuses,
logged, and recorded in the series' state once delivered; picks up where it stopped after a restart."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

from atriumseg.pipeline.serve.options import PAUSE_AFTER_ERROR, Destination
from atriumseg.pipeline.serve.outbox import Delivery, Outbox
from atriumseg.pipeline.serve.send import SendError, send_file
from atriumseg.pipeline.serve.state import SEGMENTED, Ledger, SeriesState

log = logging.getLogger("atriumseg.serve")

Send = Callable[[Path, Destination, str], None]


class Courier:
    """Sends what the outbox owes, one delivery at a time, as ``calling_ae``."""

    def __init__(self, outbox: Outbox, ledger: Ledger, destinations: list[str], calling_ae: str,
                 send: Send = send_file) -> None:
        self.outbox = outbox
        self.ledger = ledger
        self.destinations = destinations
        self.calling_ae = calling_ae
        self.send = send

    def recover(self) -> None:
        """After a start: drop deliveries a state already records as served, and those to a destination no longer
        configured (logged); owe again a SEG whose deliveries were not yet written when the process died (the SEG in
        OUT, checked by its SOP Instance UID), to the configured destinations it was made for. A purged series is
        owed nothing new: its instances are gone and its SEG reached every destination it had then. A series whose
        SEG is now at every destination it is still owed to starts its retention clock."""
        waiting = {(d.key, d.destination): d for d in self.outbox.deliveries()}
        for delivery in waiting.values():
            state = self.ledger.get(delivery.key)
            if delivery.destination not in self.destinations:
                log.warning("series %s: SEG %s dropped from the outbox: %s is no longer a --send-to destination",
                            delivery.key, delivery.seg_uid, delivery.destination)
                self.outbox.done(delivery)
            elif state is not None and state.sent.get(delivery.destination) == delivery.seg_uid:
                self.outbox.done(delivery)
        for state in self.ledger.all():
            if state.status != SEGMENTED or not state.seg_uid or state.purged:
                continue
            targets = state.destinations(self.destinations)
            if state.delivered(targets) and not state.done:  # what it still lacked went to destinations dropped
                self.ledger.update(state.key, done=time.time())
            owed = [d for d in targets if state.sent.get(d) != state.seg_uid and (state.key, d) not in waiting]
            self._owe(state, owed)

    def _owe(self, state: SeriesState, owed: list[str]) -> None:
        """Put a series' SEG back in the outbox for ``owed``, if the SEG in OUT is still the one its state names."""
        if not owed:
            return
        seg = Path(state.output)
        if seg.is_file() and pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID == state.seg_uid:
            self.outbox.put(state.key, seg, state.seg_uid, owed)
        else:
            log.error("series %s: its SEG %s is gone from %s; send the series again to redo it", state.key,
                      state.seg_uid, seg)

    def run(self, stop: threading.Event) -> None:
        pause = 0.2
        while not stop.wait(pause):
            try:
                self.run_once()
                pause = 0.2
            except Exception:  # a full disk, an unreadable SEG: logged, and the outbox is tried again later
                log.exception("courier: unexpected error; trying the outbox again in %.0f s", PAUSE_AFTER_ERROR)
                pause = PAUSE_AFTER_ERROR

    def run_once(self) -> None:
        """Try every delivery that is due; a destination that fails is not tried again in this pass."""
        self._pass(self.outbox.due())

    def try_all(self) -> None:
        """Try every delivery once, due or still waiting (at a stop: what the outbox owes gets one more try now);
        a destination that fails is not tried again in this pass."""
        self._pass(self.outbox.deliveries())

    def _pass(self, deliveries: list[Delivery]) -> None:
        down: set[str] = set()
        for delivery in deliveries:
            if delivery.destination not in down and not self.deliver(delivery):
                down.add(delivery.destination)

    def deliver(self, delivery: Delivery) -> bool:
        """Send one SEG; whether it arrived (a failure is logged and tried later)."""
        try:
            self.send(self.outbox.seg_file(delivery.seg_uid), Destination.parse(delivery.destination),
                      self.calling_ae)
        except (SendError, OSError, ValueError, RuntimeError) as err:
            later = self.outbox.failed(delivery, str(err))
            self.ledger.changed.set()  # the status shows the tries and the last error
            log.warning("series %s: SEG not delivered to %s (try %d): %s; next try in %.0f s", delivery.key,
                        delivery.destination, later.attempts, err, later.next_try - time.time())
            return False
        self.ledger.record_sent(delivery.key, delivery.destination, delivery.seg_uid, self.destinations, time.time())
        if not self.outbox.done(delivery):
            log.info("series %s: a newer SEG replaced %s meanwhile; that one is still owed to %s", delivery.key,
                     delivery.seg_uid, delivery.destination)
        tries = f" after {delivery.attempts + 1} tries" if delivery.attempts else ""
        log.info("series %s: SEG %s delivered to %s%s", delivery.key, delivery.seg_uid, delivery.destination, tries)
        return True
