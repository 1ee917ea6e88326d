"""Real DICOM parts for the service tests: the service as a process, a PACS (a pynetdicom StoreSCP in this
process), senders (pynetdicom and dcmtk's storescu), and synthetic MR series on disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from helpers import write_series
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import MRImageStorage, SegmentationStorage, Verification

ROW, COLUMN = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)  # an axial series
# .ci/run sets this: a real DICOM program missing is then a failure, not a skip (nor a pynetdicom stand-in).
REQUIRE_PROGRAMS = os.environ.get("ATRIUMSEG_REQUIRE_SERVICES") == "1"


def program(name: str) -> str | None:
    """Where a system program is; Debian puts Orthanc in /usr/sbin, off a normal user's PATH."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mr_series(folder: Path, series_uid: str | None = None, **tags: object) -> list[Path]:
    """A synthetic MR series (helpers.write_series) with its own UIDs; its files, sorted."""
    write_series(folder, ROW, COLUMN, SeriesInstanceUID=series_uid or generate_uid(),
                 StudyInstanceUID=tags.pop("StudyInstanceUID", generate_uid()), **tags)
    return sorted(folder.glob("*.dcm"))


def volume_series(folder: Path, shape: tuple[int, int, int], series_uid: str, seed: int = 5) -> list[Path]:
    """An axial MR series of a synthetic case (atriumseg.synthetic) on a grid of ``shape`` (columns, rows, slices)
    with 1.25 mm pixels 2 mm apart: bigger than ``mr_series``, so segmenting it takes a while."""
    import numpy as np

    from atriumseg.synthetic import make_affine, synthetic_case

    case = synthetic_case(shape, make_affine(shape, (1.25, 1.25, 2.0), "LPS"), seed=seed)
    pixels = np.clip(case.image * 1000, 0, 4000).astype("<u2")
    template = pydicom.dcmread(mr_series(folder / "template", series_uid)[0])
    shutil.rmtree(folder / "template")
    files = []
    for k in range(shape[2]):
        ds = template.copy()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-100.0, -100.0, 2.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [1.25, 1.25], 2.0
        ds.Rows, ds.Columns = shape[1], shape[0]
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        files.append(folder / f"slice_{k:03d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def wait_until(check: Callable[[], object], seconds: float, what: str, process: ServiceProcess | None = None):
    """Poll ``check`` until it returns something true; fail with ``what`` (and the service's log) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.popen is not None and process.popen.poll() is not None:
            raise AssertionError(f"the service ended ({process.popen.returncode}) before {what}:\n{process.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s" + (f"\n{process.log()}" if process else ""))
        time.sleep(0.05)


class ServiceProcess:
    """``atriumseg serve`` as a real process on a loopback port, logging to ``STORAGE.log``."""

    def __init__(self, storage: Path, output: Path, model: Path, port: int, *options: str) -> None:
        self.storage, self.output, self.port = storage, output, port
        self.command = [sys.executable, "-m", "atriumseg", "serve", "--host", "127.0.0.1", "--port", str(port),
                        "--storage", str(storage), "-o", str(output), "--model", str(model), "--device", "cpu",
                        *options]
        self.log_file = storage.with_name(storage.name + ".log")
        self.popen: subprocess.Popen | None = None

    def start(self, ready: str = "serving:") -> ServiceProcess:
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = dict(os.environ, OMP_NUM_THREADS="1")
        with open(self.log_file, "a") as log:
            self.popen = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until(lambda: ready in self.log()[offset:], 180, "the service started", self)
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def state(self, key: str) -> dict:
        path = self.storage / "state" / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, seconds: float = 60) -> int:
        return self.popen.wait(seconds)

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not end (tests end every service they start)."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(60)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None


class Pacs:
    """A C-STORE SCP in this process standing for the PACS: keeps every dataset it receives, in order, and answers
    ``status`` (a PACS may answer a warning), ``answer_after`` seconds later (a slow PACS)."""

    def __init__(self, port: int, ae_title: str = "PACS", answer_after: float = 0.0, status: int = 0x0000,
                 host: str = "127.0.0.1") -> None:
        self.port, self.ae_title, self.answer_after, self.status, self.host = port, ae_title, answer_after, status, host
        self.received: list[Dataset] = []
        self._lock = threading.Lock()
        self._server = None

    def _store(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.received.append(dataset)
        time.sleep(self.answer_after)
        return self.status

    def start(self) -> Pacs:
        ae = AE(ae_title=self.ae_title)
        for sop_class in (SegmentationStorage, MRImageStorage):
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.add_supported_context(Verification)
        self._server = ae.start_server((self.host, self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def segs(self) -> list[Dataset]:
        with self._lock:
            return [d for d in self.received if d.SOPClassUID == SegmentationStorage]


def send(files: list[Path], port: int, calling: str = "SCANNER", called: str = "ATRIUMSEG") -> list[int] | None:
    """C-STORE each file over one association (pynetdicom); the statuses, or None when the association was refused."""
    datasets = [pydicom.dcmread(f) for f in files]
    ae = AE(ae_title=calling)
    for uid in dict.fromkeys(d.SOPClassUID for d in datasets):
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return None
    try:
        return [int(assoc.send_c_store(d).Status) for d in datasets]
    finally:
        assoc.release()


def storescu(files: list[Path], port: int, calling: str = "SCANNER", called: str = "ATRIUMSEG"):
    """dcmtk's storescu, as a scanner sends: one association, the files in order."""
    command = [STORESCU or "storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


STORESCU = program("storescu")
HAVE_DCMTK = STORESCU is not None


class Orthanc:
    """A real Orthanc on loopback ports with a throw-away configuration declaring atriumseg as a modality."""

    def __init__(self, folder: Path, atriumseg_port: int, ae_title: str = "ORTHANC") -> None:
        self.folder, self.ae_title = folder, ae_title
        self.http_port, self.dicom_port = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "atriumseg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": ae_title,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
            "DicomModalities": {"atriumseg": ["ATRIUMSEG", "127.0.0.1", atriumseg_port]},
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.popen: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        log = open(self.folder / "orthanc.log", "w")
        self.popen = subprocess.Popen([ORTHANC or "Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self._up, 60, "Orthanc answering over HTTP")
        return self

    def _up(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"Orthanc ended: {(self.folder / 'orthanc.log').read_text()}")
        try:
            self.get("/system")
        except OSError:
            return False
        return True

    def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        from urllib.request import Request, urlopen

        request = Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        with urlopen(request, timeout=60) as response:
            return response.read()

    def get(self, path: str):
        return json.loads(self._call("GET", path))

    def post(self, path: str, body: bytes):
        return json.loads(self._call("POST", path, body))

    def file(self, instance: str) -> bytes:
        return self._call("GET", f"/instances/{instance}/file")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


ORTHANC = program("Orthanc")
HAVE_ORTHANC = ORTHANC is not None
