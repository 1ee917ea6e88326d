"""``atriumseg serve``: the parts wired together, started after recovery, stopped cleanly on SIGTERM.

Threads: the DICOM door (pynetdicom, one thread per association), the clock (completes series, applies
``--keep-days``), the one worker (the model), the courier (the outbox), the status writer, and the watcher.
The first SIGTERM (or Ctrl-C) stops accepting associations and aborts those open, lets the worker finish the case
in hand and the courier try once more everything the outbox owes, then exits 0; a second one, until the process
has ended, exits at once (130). Every file is written atomically, so neither leaves half a file; what was not
finished is finished by the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from atriumseg.pipeline.serve.completion import Completion
from atriumseg.pipeline.serve.courier import Courier
from atriumseg.pipeline.serve.options import PAUSE_AFTER_ERROR, ServeOptions
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.retention import purge
from atriumseg.pipeline.serve.scp import Receiver
from atriumseg.pipeline.serve.state import Ledger
from atriumseg.pipeline.serve.status import snapshot
from atriumseg.pipeline.serve.storage import Storage
from atriumseg.pipeline.serve.watch import Watcher
from atriumseg.pipeline.serve.worker import Job, JobQueue, Segment, Worker

log = logging.getLogger("atriumseg.serve")

TICK = 0.2  # seconds between looks for complete series
PURGE_EVERY = 3600.0
STATUS_LOOK = 1.0  # seconds between looks at the work in hand and queued (in memory) for the status
STATUS_HEARTBEAT = 30.0  # status.json is rewritten at least this often, so its "updated" shows the service lives
EXIT_OK, EXIT_STOPPED_AT_ONCE = 0, 130


class Service:
    """One storage folder's service; :meth:`start` recovers and starts every part, :meth:`stop` ends them."""

    def __init__(self, segment: Segment, options: ServeOptions) -> None:
        self.options = options
        self.storage = Storage(options.storage)
        self.ledger = Ledger(self.storage)
        self.outbox = Outbox(self.storage, options.retry_seconds)
        self.completion = Completion(self.storage, self.ledger, options.series_timeout)
        self.jobs = JobQueue()
        destinations = [str(d) for d in options.send_to]
        self.worker = Worker(segment, self.storage, self.ledger, self.outbox, destinations)
        self.courier = Courier(self.outbox, self.ledger, destinations, options.ae_title)
        self.receiver = Receiver(options, self.storage, self.ledger, self.completion)
        self.stopping = threading.Event()  # no new work: the door is closed, the worker ends after its job
        self._threads: list[threading.Thread] = []
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.watcher: Watcher | None = None  # the folder door, with --watch
        if options.watch is not None:
            skip = frozenset({options.output.resolve(), options.storage.resolve()})
            self.watcher = Watcher(options.watch, options.settle,
                                   lambda path, changed: self.jobs.put(Job(path=path, redo=changed)), skip)

    def start(self) -> None:
        self.storage.clean()
        self.ledger.load()
        for state in self.ledger.recover():
            self.jobs.put(Job(series=state.key))
        self.courier.recover()
        if self.options.dicom_door:  # first: a port taken or a bad certificate stops the start before any work
            self.receiver.start()
        parts = {"worker": lambda: self.worker.run(self.jobs, self.stopping),
                 "courier": lambda: self.courier.run(self.stopping), "clock": self._clock, "status": self._status}
        watcher = self.watcher
        if watcher is not None:
            parts["watch"] = lambda: watcher.run(self.stopping)
        for name, target in parts.items():
            thread = threading.Thread(target=target, name=f"serve-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("%s", self._describe())

    def _describe(self) -> str:
        o = self.options
        door = (f"DICOM {o.ae_title} on {o.host}:{o.port}{' (TLS)' if o.tls_cert else ''}, callers: "
                + ("anyone (--allow-any)" if o.allow_any else ", ".join(map(str, o.allow)))) if o.dicom_door else \
            "DICOM door closed (no --allow)"
        watch = f"; watching {o.watch} (settle {o.settle:g} s)" if o.watch else ""
        send = ", ".join(map(str, o.send_to)) or "nowhere (no --send-to)"
        return f"serving: {door}{watch}; results to {o.output}, SEGs sent to {send}; storage {o.storage}"

    def stop(self) -> None:
        """Close the door (aborting the associations open), let the worker finish its job and the courier its pass
        (so no SEG is sent twice), try everything the outbox owes once more, due or not, and write the status."""
        self.stopping.set()
        self.receiver.stop()
        for thread in self._threads:
            if thread.name in ("serve-worker", "serve-courier"):
                thread.join()
        self.courier.try_all()
        self.write_status()

    def _clock(self) -> None:
        last_purge, pause = 0.0, TICK
        while not self.stopping.wait(pause):
            pause = TICK
            try:
                for state in self.completion.complete_due():
                    self.jobs.put(Job(series=state.key))
                if time.time() - last_purge >= PURGE_EVERY:
                    last_purge = time.time()  # a purge that raises is not tried again at every tick
                    purge(self.storage, self.ledger, self.options.keep_days)
            except Exception:  # a full disk, a vanished folder: logged, and the clock goes on
                log.exception("clock: unexpected error; going on in %.0f s", PAUSE_AFTER_ERROR)
                pause = PAUSE_AFTER_ERROR

    def service_info(self) -> dict:
        o = self.options
        return {"ae_title": o.ae_title, "address": f"{o.host}:{o.port}" if o.dicom_door else "",
                "started": self.started, "in_hand": self.worker.current, "queue": self.jobs.waiting(),
                "send_to": [str(d) for d in o.send_to], "watch": str(o.watch or ""), "output": str(o.output),
                "settling": list(self.watcher.settling) if self.watcher is not None else []}

    def write_status(self, info: dict | None = None) -> None:
        """Write ``status.json``: ``info`` (the service's, :meth:`service_info` when None), every state, the outbox."""
        try:
            self.storage.write_json(self.storage.status_file, snapshot(info or self.service_info(), self.ledger,
                                                                       self.outbox, self.storage))
        except OSError as err:
            log.warning("cannot write %s: %s", self.storage.status_file, err)

    def _status(self) -> None:
        """Rewrite ``status.json`` when a state changed (at once) or the work in hand or queued did (seen within
        ``STATUS_LOOK`` seconds), else every ``STATUS_HEARTBEAT`` seconds: each write reads the whole picture."""
        written, last = None, 0.0
        while not self.stopping.is_set():
            changed = self.ledger.changed.wait(STATUS_LOOK)
            info = self.service_info()
            if not changed and info == written and time.monotonic() - last < STATUS_HEARTBEAT:
                continue
            self.ledger.changed.clear()
            try:
                self.write_status(info)
                written, last = info, time.monotonic()
            except Exception:  # e.g. an outbox entry changing while read: the next change writes it again
                log.exception("status: cannot write %s", self.storage.status_file)
                self.stopping.wait(PAUSE_AFTER_ERROR)


@contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """First SIGTERM/SIGINT sets ``stop``; a second exits at once (atomic writes leave no partial file)."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            log.warning("%s again: stopping at once", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(EXIT_STOPPED_AT_ONCE)
        log.warning("%s: no new associations; finishing the case in hand (again to stop at once)",
                    signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def serve(segment: Segment, options: ServeOptions) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean stop. Call from the main thread."""
    service = Service(segment, options)
    stop = threading.Event()
    with _signals(stop):
        service.start()
        while not stop.wait(1.0):
            pass
        service.stop()
        log.info("stopped; %d job(s) left for the next start", len(service.jobs.waiting()))
        _join_lasting_threads()
    return EXIT_OK


def _join_lasting_threads() -> None:
    """Wait, with the handlers still installed, for the threads that would keep the process alive (pynetdicom's
    connection threads are not daemons): the interpreter would wait for them anyway, but a second signal then still
    stops at once (130) instead of killing the process with the default handler."""
    for thread in threading.enumerate():
        if not thread.daemon and thread is not threading.current_thread():
            thread.join()
