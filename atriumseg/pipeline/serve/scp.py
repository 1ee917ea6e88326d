"""The DICOM door: a C-ECHO and C-STORE SCP (pynetdicom) that stores before it acknowledges.

Answers, per PS3.4 (Storage) and PS3.7 (DIMSE statuses):

- a caller not admitted (``--allow``) is rejected at association time (permanent, "calling AE title not
  recognised"); nothing of it is read or stored;
- an MR image is written atomically and fsynced, then answered 0x0000; a disk that cannot take it is answered
  0xA700 (out of resources), never success;
- any other storage SOP class (CT, SR, a presentation state, Enhanced MR) is answered 0x0122 (SOP class not
  supported), a dataset that cannot be decoded 0xC210 (cannot understand), one without the UIDs that place it
  0xA900 (does not match SOP class), one that cannot be written as a DICOM file 0xC210; each is recorded in
  ``refused.jsonl`` with the reason.

A stop closes the port and aborts the associations still open, so nothing is stored or answered afterwards.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

from pydicom.uid import MRImageStorage
from pynetdicom import AE, AllStoragePresentationContexts, Association, evt
from pynetdicom.sop_class import Verification

from atriumseg.pipeline.serve.completion import Completion
from atriumseg.pipeline.serve.options import ServeOptions
from atriumseg.pipeline.serve.state import Ledger
from atriumseg.pipeline.serve.storage import Storage, valid_uid

log = logging.getLogger(__name__)

SUCCESS, OUT_OF_RESOURCES, NOT_SUPPORTED, CANNOT_UNDERSTAND, MISMATCH = 0x0000, 0xA700, 0x0122, 0xC210, 0xA900
REJECT_PERMANENT, SERVICE_USER, CALLING_AET_UNKNOWN = 0x01, 0x01, 0x03
TLS_SOCKET_TIMEOUT = 60.0  # seconds a TLS caller may stay silent in a handshake or mid-message (pynetdicom's default)


class LazyHandshakeContext(ssl.SSLContext):
    """A server TLS context whose sockets do the handshake on their first read, in the association's own thread.

    pynetdicom wraps each accepted socket in its one accept loop; with the default handshake on connect, one client
    that connects and sends nothing would hold that loop, and so every later caller, for ever. Each socket also gets
    a timeout, so a handshake that stalls ends that association only."""

    def wrap_socket(self, sock: socket.socket, server_side: bool = False, **options: Any) -> ssl.SSLSocket:
        sock.settimeout(TLS_SOCKET_TIMEOUT)
        return super().wrap_socket(sock, server_side, **{**options, "do_handshake_on_connect": False})


class Receiver:
    """Handlers of the DICOM door, each keeping the promise above; :meth:`start` opens the port."""

    def __init__(self, options: ServeOptions, storage: Storage, ledger: Ledger, completion: Completion) -> None:
        self.options = options
        self.storage = storage
        self.ledger = ledger
        self.completion = completion
        self.server = None

    def start(self):
        """Listen on ``options.host:port`` in background threads (one per association); returns the server."""
        ae = AE(ae_title=self.options.ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = 32
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        handlers = [(evt.EVT_REQUESTED, self.on_requested), (evt.EVT_C_ECHO, self.on_echo),
                    (evt.EVT_C_STORE, self.on_store), (evt.EVT_RELEASED, self.on_ended),
                    (evt.EVT_ABORTED, self.on_ended), (evt.EVT_CONN_CLOSE, self.on_ended)]
        self.server = ae.start_server((self.options.host, self.options.port), block=False, evt_handlers=handlers,
                                      ssl_context=self._tls())
        return self.server

    def _tls(self) -> ssl.SSLContext | None:
        """The server context of ``--tls-cert/--tls-key`` (what ``ssl.create_default_context`` gives a server)."""
        if self.options.tls_cert is None:
            return None
        context = LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.options.tls_cert), str(self.options.tls_key))
        return context

    def stop(self) -> None:
        """Stop accepting associations and abort those still open: pynetdicom's shutdown only closes the port, and
        an open association would go on storing (and answering Success) after the stop."""
        if self.server is None:
            return
        self.server.shutdown()
        still_open = self.server.active_associations
        if still_open:
            log.warning("stopping: %d open association(s) aborted; what they stored is kept, their senders send the "
                        "rest again", len(still_open))
        for assoc in still_open:
            _end(assoc)

    def on_requested(self, event: evt.Event) -> None:
        calling = event.assoc.requestor.primitive.calling_ae_title.strip()
        address = event.assoc.requestor.address
        if not self.options.admits(calling, address):
            log.warning("refused an association from %s at %s: not in --allow", calling, address)
            event.assoc.acse.send_reject(REJECT_PERMANENT, SERVICE_USER, CALLING_AET_UNKNOWN)
            event.assoc.kill()  # as pynetdicom does after its own rejections: the reject is sent, then the link ends

    def on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    def on_ended(self, event: evt.Event) -> None:
        self.completion.ended(id(event.assoc))

    def _refuse(self, event: evt.Event, status: int, reason: str, **fields: str) -> int:
        caller = event.assoc.requestor.ae_title.strip()
        log.warning("refused an object from %s (0x%04X): %s", caller, status, reason)
        try:
            self.storage.refuse(reason, caller=caller, status=f"0x{status:04X}", **fields)
        except OSError as err:
            log.error("cannot record the refused object in %s: %s", self.storage.refused_file, err)
        self.ledger.changed.set()  # the status counts refused objects
        return status

    def on_store(self, event: evt.Event) -> int:
        sop_class = str(event.request.AffectedSOPClassUID)
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        if sop_class != MRImageStorage:
            name = getattr(event.request.AffectedSOPClassUID, "name", sop_class)
            return self._refuse(event, NOT_SUPPORTED, f"{name} is not an MR image (MR Image Storage); atriumseg "
                                "segments MR series only", sop_class=sop_class, sop_instance=sop_uid)
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
        except Exception as err:  # whatever pydicom raises on a broken dataset is answered, never fatal
            return self._refuse(event, CANNOT_UNDERSTAND, f"the dataset cannot be decoded: {err}",
                                sop_class=sop_class, sop_instance=sop_uid)
        series = str(dataset.get("SeriesInstanceUID", ""))
        if not (valid_uid(series) and valid_uid(str(dataset.get("SOPInstanceUID", "")))):
            return self._refuse(event, MISMATCH, "no valid SeriesInstanceUID or SOPInstanceUID to file it under",
                                sop_class=sop_class, sop_instance=sop_uid)
        self.completion.received(id(event.assoc), series)  # before the write: never completed while arriving
        try:
            with self.ledger.series_lock(series):  # never written into a folder that --keep-days is removing
                try:
                    self.storage.write_instance(series, dataset)
                except ValueError as err:  # pydicom cannot write it as a DICOM file (enforce_file_format)
                    return self._refuse(event, CANNOT_UNDERSTAND, f"the dataset cannot be stored as a DICOM file: "
                                        f"{err}", sop_class=sop_class, sop_instance=sop_uid)
                self.ledger.touch(series, time.time(), event.assoc.requestor.ae_title.strip(),
                                  study_uid=str(dataset.get("StudyInstanceUID", "")), series_uid=series,
                                  description=str(dataset.get("SeriesDescription", "")))
        except OSError as err:
            log.error("cannot store %s of series %s: %s; answered 0xA700", sop_uid, series, err.strerror or err)
            return OUT_OF_RESOURCES
        return SUCCESS


def _end(assoc: Association) -> None:
    """Abort an association (A-ABORT once established) and close its connection at once: its ARTIM timer, set to 0,
    expires instead of waiting for the caller to close, and ends one not yet established, which pynetdicom cannot
    abort."""
    assoc.acse_timeout = 0
    if assoc.is_established:
        assoc.abort()
