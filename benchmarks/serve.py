"""Seconds from a scanner's last instance to the SEG at the PACS: ``atriumseg serve`` (the model kept loaded)
against a new ``atriumseg segment`` process per series plus a send, measured in the same run.

The scanner is dcmtk's ``storescu`` (a third-party sender); the PACS is a pynetdicom C-STORE SCP in this process
that notes when each SEG arrives. Series: 256 x 256 x 120 axial MR series derived from the bundled sample
(la_023, its true A-S-L voxel order turned into an axial LPS series and zero-padded in plane), each with new
UIDs. The service runs with ``--series-timeout 0`` (the timeout, a site's choice, is not counted): its latency
runs from storescu's exit (last instance sent, association released) to the SEG's arrival. The process per
series starts once the series is on disk: ``atriumseg segment SERIES --format dicom-seg`` and ``storescu`` of the
SEG. The first series the service gets is a warm-up, reported apart. Built-in model unless ``--model``.

    python -m benchmarks.serve [--series 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import SegmentationStorage

from benchmarks.common import ROOT, machine, print_table, setup_logging, write_results

SAMPLE = ROOT / "atriumseg" / "data" / "sample_la_023_image.nii.gz"
GRID = (256, 256, 120)  # columns, rows, slices
SPACING = (1.37, 1.25, 1.25)  # mm between columns (L), rows (P), slices (S): the sample's own voxel sizes


def sample_volume() -> np.ndarray:
    """The bundled sample as an (L, P, S) array on :data:`GRID`: its voxels run A, S, L; padded or cut centrally."""
    data = np.asarray(nib.load(SAMPLE).dataobj, dtype=np.float32)
    lps = np.transpose(data, (2, 0, 1))[:, ::-1, :]  # (L, A, S) with A reversed: (L, P, S)
    out = np.zeros(GRID, np.float32)
    src, dst = [], []
    for n, size in zip(lps.shape, GRID, strict=True):
        lo = max(0, (n - size) // 2)
        at = max(0, (size - n) // 2)
        count = min(n, size)
        src.append(slice(lo, lo + count))
        dst.append(slice(at, at + count))
    out[tuple(dst)] = lps[tuple(src)]
    return np.clip(out, 0, 65535).astype("<u2")


def write_series(folder: Path, volume: np.ndarray) -> list[Path]:
    """An axial MR series of ``volume`` with new study, series and instance UIDs; its files."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(GRID[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.StudyTime = "Bench^Mark", "BENCH", "20260101", "120000"
        ds.AccessionNumber, ds.StudyID, ds.PatientBirthDate, ds.PatientSex = "", "1", "", "O"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = "MR", 1, k + 1, "bSSFP la_023"
        ds.ImagePositionPatient = [0.0, 0.0, k * SPACING[2]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [SPACING[1], SPACING[0]], SPACING[2]
        ds.Rows, ds.Columns = GRID[1], GRID[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T).tobytes()
        files.append(folder / f"{k:03d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


class Pacs:
    """A C-STORE SCP noting when each SEG arrives (by the series it references)."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[str, float] = {}
        self.ready = threading.Condition()
        ae = AE(ae_title="PACS")
        ae.add_supported_context(SegmentationStorage)
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)])

    def store(self, event: evt.Event) -> int:
        series = event.dataset.ReferencedSeriesSequence[0].SeriesInstanceUID
        with self.ready:
            self.arrived[series] = time.perf_counter()
            self.ready.notify_all()
        return 0

    def wait(self, series: str, seconds: float = 300) -> float:
        with self.ready:
            if not self.ready.wait_for(lambda: series in self.arrived, seconds):
                raise TimeoutError(f"no SEG of series {series} at the PACS within {seconds} s")
            return self.arrived[series]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def storescu(files: list[Path], port: int, calling: str, called: str) -> None:
    """dcmtk's storescu; ``-R`` proposes only the files' own SOP classes (its default list lacks Segmentation)."""
    subprocess.run(["storescu", "-R", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, files)],
                   check=True, capture_output=True)


def series_uid(files: list[Path]) -> str:
    import pydicom

    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def start_service(scratch: Path, port: int, pacs_port: int, model: list[str]) -> subprocess.Popen:
    log = scratch / "serve.log"
    command = [sys.executable, "-m", "atriumseg", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--storage", str(scratch / "storage"), "-o", str(scratch / "served"), "--allow", "SCANNER",
               "--send-to", f"PACS@127.0.0.1:{pacs_port}", "--series-timeout", "0", *model]
    with open(log, "w") as fh:
        service = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT)
    while "serving:" not in log.read_text():
        if service.poll() is not None:
            raise RuntimeError(f"the service ended: {log.read_text()}")
        time.sleep(0.1)
    return service


def by_service(series: list[list[Path]], port: int, pacs: Pacs) -> list[float]:
    latencies = []
    for files in series:
        storescu(files, port, "SCANNER", "ATRIUMSEG")
        last = time.perf_counter()
        latencies.append(pacs.wait(series_uid(files)) - last)
    return latencies


def by_process(series: list[list[Path]], scratch: Path, pacs: Pacs, model: list[str]) -> list[float]:
    latencies = []
    for i, files in enumerate(series):
        out = scratch / f"segment-{i}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "atriumseg", "segment", str(files[0].parent), "-o", str(out),
                        "--format", "dicom-seg", "--quiet", *model], check=True, capture_output=True)
        storescu([out / f"{files[0].parent.name}.seg.dcm"], pacs.server.server_address[1], "ATRIUMSEG", "PACS")
        latencies.append(pacs.wait(series_uid(files)) - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=3, help="timed series per method (default 3)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the built-in model)")
    args = parser.parse_args()
    setup_logging()
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if shutil.which("storescu") is None:
        raise SystemExit("dcmtk's storescu is needed (apt-get install dcmtk)")
    model = ["--model", str(args.model)] if args.model else []
    volume = sample_volume()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        scratch = Path(tmp)
        made = [write_series(scratch / f"series-{i}", volume) for i in range(2 * args.series + 1)]
        warm, served, processed = made[0], made[1:args.series + 1], made[args.series + 1:]
        pacs, port = Pacs(free_port()), free_port()
        service = start_service(scratch, port, pacs.server.server_address[1], model)
        try:
            warm_up = by_service([warm], port, pacs)[0]
            service_s = by_service(served, port, pacs)
            process_s = by_process(processed, scratch, pacs, model)
        finally:
            service.terminate()
            service.wait(60)
            pacs.server.shutdown()
    service_median, process_median = statistics.median(service_s), statistics.median(process_s)
    rows = [["atriumseg serve (model loaded)", f"{service_median:.2f}", " ".join(f"{s:.2f}" for s in service_s),
             "1.00"],
            ["atriumseg segment per series + storescu", f"{process_median:.2f}",
             " ".join(f"{s:.2f}" for s in process_s), f"{process_median / service_median:.2f}"]]
    print_table(f"Last instance -> SEG at the PACS, {GRID[0]}x{GRID[1]}x{GRID[2]} series, storescu as the scanner "
                f"(service warm-up series: {warm_up:.2f} s; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')})",
                ["method", "median s", "each s", "x serve"], rows)
    write_results("serve", {"grid": GRID, "series": args.series, "service_s": service_s, "process_s": process_s,
                            "warm_up_s": warm_up, "machine": machine_info()})


def machine_info() -> dict:
    import torch

    return machine(torch.device("cpu"))


if __name__ == "__main__":
    main()
