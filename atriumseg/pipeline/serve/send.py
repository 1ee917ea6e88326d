"""C-STORE SCU: one DICOM file to one destination, with a clear error when it does not arrive."""

from __future__ import annotations

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.status import code_to_category

from atriumseg.pipeline.serve.options import Destination

STORED = ("Success", "Warning")  # PS3.4 B.2.3: a warning (0x0001, 0x0107, 0x0116, 0xBxxx) still means "stored"


class SendError(RuntimeError):
    """The destination did not take the file: unreachable, refused the association, or answered a failure."""


def send_file(path, destination: Destination, calling_ae: str, timeout: float = 30.0) -> None:
    """Send one DICOM file to ``destination`` over a new association; raises :class:`SendError` with the reason."""
    dataset = pydicom.dcmread(path)
    syntaxes = list(dict.fromkeys([dataset.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian,
                                   ImplicitVRLittleEndian]))
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(dataset.SOPClassUID, syntaxes)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = min(timeout, 10.0)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        what = "refused the association" if assoc.is_rejected else "could not be reached (or aborted)"
        raise SendError(f"{destination} {what}")
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise SendError(f"{destination}: no C-STORE response (timed out or aborted)")
    category = code_to_category(int(code))
    if category not in STORED:
        raise SendError(f"{destination}: C-STORE answered 0x{code:04X} ({category})")
