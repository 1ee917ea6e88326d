"""The DICOM door on a full disk (0xA700, never success, every instance acknowledged on disk, whole), over TLS (a
silent caller holds up nobody), and at a stop (the associations open are aborted)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, Association
from pynetdicom.sop_class import MRImageStorage, Verification

from atriumseg.pipeline.serve.completion import Completion
from atriumseg.pipeline.serve.options import AllowRule, ServeOptions
from atriumseg.pipeline.serve.scp import Receiver
from atriumseg.pipeline.serve.service import Service
from atriumseg.pipeline.serve.state import Ledger
from atriumseg.pipeline.serve.storage import Storage
from serve.nodes import free_port, send, volume_series, wait_until

SERIES = "1.2.826.0.1.3680043.8.498.95"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 96 KiB tmpfs (root may mount one); skipped with the reason where mounting is not permitted."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not root'}); the full-disk "
                    "answer is checked where root may mount one (CI)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_answered_out_of_resources_and_acknowledged_instances_are_whole(
    tmp_path: Path, small_disk: Path, start_service
) -> None:
    files = volume_series(tmp_path / "series", (64, 64, 30), SERIES)  # about 9 KiB a file: more than fits
    service = start_service("--allow", "SCANNER", "--series-timeout", "600", storage=small_disk)
    statuses = send(files, service.port)
    assert 0 in statuses and 0xA700 in statuses and set(statuses) == {0, 0xA700}, statuses
    acknowledged = {pydicom.dcmread(f).SOPInstanceUID for f, status in zip(files, statuses, strict=True) if status == 0}
    stored = {pydicom.dcmread(p).SOPInstanceUID for p in (small_disk / "series" / SERIES).glob("*.dcm")}
    assert acknowledged <= stored
    assert not [p for p in small_disk.rglob("*") if p.name.startswith(".tmp-")]  # no half-written file left
    assert service.popen.poll() is None and send(files[:1], service.port) in ([0], [0xA700])  # still answering
    service.stop()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for localhost (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days",
                    "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_door(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[tuple[int, Path]]:
    """A DICOM door over TLS on a free loopback port: its port and certificate; stopped at the end."""
    cert, key = certificate
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", host="127.0.0.1", port=free_port(),
                           allow=(AllowRule("SCANNER"),), tls_cert=cert, tls_key=key)
    storage = Storage(options.storage)
    ledger = Ledger(storage)
    receiver = Receiver(options, storage, ledger, Completion(storage, ledger, 0.0))
    receiver.start()
    try:
        yield options.port, cert
    finally:
        receiver.stop()


def test_with_tls_the_door_speaks_dicom_over_tls_only(tls_door: tuple[int, Path]) -> None:
    port, cert = tls_door
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="ATRIUMSEG", tls_args=(client, "localhost"))
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    plain = AE(ae_title="SCANNER")
    plain.add_requested_context(Verification)
    plain.acse_timeout = plain.network_timeout = 5
    assert not plain.associate("127.0.0.1", port, ae_title="ATRIUMSEG").is_established


def test_a_tls_caller_that_connects_and_sends_nothing_holds_up_no_other_caller(tls_door: tuple[int, Path]) -> None:
    port, cert = tls_door
    with socket.create_connection(("127.0.0.1", port)):  # a TCP connection that never says hello
        time.sleep(0.3)  # accepted by the server's one accept loop
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 5
        started = time.monotonic()
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        assoc = ae.associate("127.0.0.1", port, ae_title="ATRIUMSEG", tls_args=(client, "localhost"))
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        assert time.monotonic() - started < 3


def _store(assoc: Association, path: Path) -> int | None:
    """The status a C-STORE of ``path`` is answered, or None if it is not answered (the association is gone)."""
    try:
        return getattr(assoc.send_c_store(pydicom.dcmread(path)), "Status", None)
    except RuntimeError:  # pynetdicom sends nothing on an association that is no longer established
        return None


def test_an_association_open_at_the_stop_is_aborted_and_stores_nothing_more(tmp_path: Path, caplog) -> None:
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", host="127.0.0.1", port=free_port(),
                           allow=(AllowRule("SCANNER"),), series_timeout=600.0)
    service = Service(lambda path, is_series, redo: [], options)
    files = volume_series(tmp_path / "series", (8, 8, 3), SERIES)
    service.start()
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", options.port, ae_title="ATRIUMSEG")
    try:
        assert _store(assoc, files[0]) == 0
        with caplog.at_level(logging.WARNING):
            started = time.monotonic()
            service.stop()
            assert time.monotonic() - started < 10
        wait_until(lambda: assoc.is_aborted, 5, "the sender told of the abort")
        assert _store(assoc, files[1]) is None and len(service.storage.instances(SERIES)) == 1
        assert "stopping: 1 open association(s) aborted" in caplog.text
        lasting = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
        wait_until(lambda: not [t for t in lasting if t.is_alive()], 5, "no connection thread left to hold the process")
    finally:
        assoc.abort()


def test_an_instance_that_cannot_be_written_as_a_dicom_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", host="127.0.0.1", port=free_port(),
                           allow=(AllowRule("SCANNER"),))
    storage = Storage(options.storage)
    ledger = Ledger(storage)

    def unwritable(key: str, dataset: pydicom.Dataset) -> Path:
        raise ValueError("Required File Meta Information elements are either missing or have an empty value")

    storage.write_instance = unwritable  # what save_as(enforce_file_format=True) raises on such a dataset
    receiver = Receiver(options, storage, ledger, Completion(storage, ledger, 0.0))
    receiver.start()
    try:
        files = volume_series(tmp_path / "series", (8, 8, 2), SERIES)
        assert send(files[:1], options.port) == [0xC210]
    finally:
        receiver.stop()
    (refused,) = [json.loads(line) for line in storage.refused_file.read_text(encoding="utf-8").splitlines()]
    assert refused["status"] == "0xC210" and "cannot be stored as a DICOM file" in refused["reason"]
    assert refused["sop_instance"] == pydicom.dcmread(files[0]).SOPInstanceUID and ledger.get(SERIES) is None


def test_a_port_already_taken_stops_the_start_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", host="127.0.0.1",
                               port=taken.getsockname()[1], allow=(AllowRule("SCANNER"),))
        service = Service(lambda path, is_series, redo: [], options)
        with pytest.raises(OSError, match="in use"):
            service.start()
    assert service._threads == []  # no worker took a recovered series, no courier sent, before it failed
