"""C-STORE SCU against a real SCP: a SEG is delivered when the destination answers Success or a Warning (so it is
not sent again for ever), not when it answers a failure; an IPv6 destination in brackets is reached."""

from __future__ import annotations

import socket
from pathlib import Path

import pydicom
import pytest

from atriumseg.pipeline.serve.options import Destination
from atriumseg.pipeline.serve.send import SendError, send_file
from serve.nodes import Pacs, free_port, mr_series


@pytest.mark.parametrize("status", [0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007])
def test_success_and_every_warning_count_as_stored(tmp_path: Path, status: int) -> None:
    seg = mr_series(tmp_path / "series", "1.2.840.91")[0]  # any DICOM file travels the same way
    pacs = Pacs(free_port(), status=status).start()
    try:
        send_file(seg, Destination.parse(f"PACS@127.0.0.1:{pacs.port}"), "ATRIUMSEG")
    finally:
        pacs.stop()
    assert [d.SOPInstanceUID for d in pacs.received] == [pydicom.dcmread(seg).SOPInstanceUID]


@pytest.mark.parametrize("status", [0xA700, 0xA900, 0xC210, 0x0122])
def test_a_failure_answer_is_an_error_naming_the_status(tmp_path: Path, status: int) -> None:
    seg = mr_series(tmp_path / "series", "1.2.840.92")[0]
    pacs = Pacs(free_port(), status=status).start()
    try:
        with pytest.raises(SendError, match=f"C-STORE answered 0x{status:04X} \\(Failure\\)"):
            send_file(seg, Destination.parse(f"PACS@127.0.0.1:{pacs.port}"), "ATRIUMSEG")
    finally:
        pacs.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_an_ipv6_destination_written_in_brackets_is_reached(tmp_path: Path) -> None:
    seg = mr_series(tmp_path / "series", "1.2.840.93")[0]
    pacs = Pacs(free_port(), host="::1").start()
    try:
        send_file(seg, Destination.parse(f"PACS@[::1]:{pacs.port}"), "ATRIUMSEG")
    finally:
        pacs.stop()
    assert len(pacs.received) == 1
