"""The service as a real process: a series sent by a real client comes back to a real SCP as the SEG of the mask
``atriumseg segment`` writes; re-sent series; the doors' refusals; the watch folder; ``atriumseg status``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import seg_on_grid, write_nifti
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import BasicTextSRStorage, CTImageStorage, Verification

from atriumseg.cli import EXIT_OK, main
from atriumseg.synthetic import make_affine, synthetic_case
from serve.nodes import HAVE_DCMTK, REQUIRE_PROGRAMS, mr_series, send, storescu, wait_until

pytestmark = pytest.mark.slow


def _reference_mask(source: Path, out: Path, model: Path, case: str) -> nib.Nifti1Image:
    """The mask ``atriumseg segment SOURCE -o OUT`` writes for ``case``."""
    assert main(["segment", str(source), "-o", str(out), "--model", str(model), "--quiet"]) == EXIT_OK
    return nib.load(out / f"{case}.nii.gz")


def _send(files: list[Path], port: int) -> None:
    """dcmtk's storescu as the scanner; where dcmtk is missing (not in CI, which requires it) pynetdicom sends."""
    assert HAVE_DCMTK or not REQUIRE_PROGRAMS, "dcmtk's storescu is not installed (.ci/run installs it)"
    if HAVE_DCMTK:
        done = storescu(files, port)
        assert done.returncode == 0, done.stderr
    else:
        assert send(files, port) == [0] * len(files)


def test_a_series_comes_back_as_the_seg_of_the_segment_mask_and_a_resent_series_is_redone_only_if_new(
    tmp_path: Path, model_folder: Path, pacs, start_service
) -> None:
    files = mr_series(tmp_path / "series", "1.2.826.0.1.3680043.8.498.77")
    service = start_service("--send-to", f"PACS@127.0.0.1:{pacs.port}", "--allow", "SCANNER",
                            "--series-timeout", "0.5")
    _send(files[:-1], service.port)  # a series sent short, then whole: new instances, a new SEG
    wait_until(lambda: len(pacs.segs()) == 1, 120, "the first SEG at the PACS", service)
    _send(files, service.port)
    wait_until(lambda: len(pacs.segs()) == 2, 120, "the second SEG at the PACS", service)
    _send(files, service.port)  # the same instances again: no new SEG
    wait_until(lambda: "the same 12 instances again" in service.log(), 60, "the re-sent series settled", service)

    first, second = pacs.segs()
    assert first.SOPInstanceUID != second.SOPInstanceUID and len(pacs.segs()) == 2
    source = pydicom.dcmread(files[0])
    assert second.StudyInstanceUID == source.StudyInstanceUID and second.PatientID == source.PatientID
    referenced = {item.ReferencedSOPInstanceUID for series in second.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f).SOPInstanceUID for f in files}

    reference = _reference_mask(tmp_path / "series", tmp_path / "reference", model_folder, "series")
    expected = np.asarray(reference.dataobj)
    assert expected.sum() > 300, f"only {expected.sum()} atrium voxels; the test needs a real shape"
    np.testing.assert_array_equal(seg_on_grid(second, reference.affine, expected.shape), expected)

    key = source.SeriesInstanceUID
    with open(tmp_path / "out" / "report.csv", newline="") as fh:
        rows = {row["case"]: row for row in csv.DictReader(fh)}
    assert rows[key]["status"] == "ok" and rows[key]["study_uid"] == source.StudyInstanceUID
    assert float(rows[key]["volume_ml"]) > 0
    status = subprocess.run([sys.executable, "-m", "atriumseg", "status", str(service.storage), "--json"],
                            capture_output=True, text=True, check=True)
    report = json.loads(status.stdout)
    (state,) = report["series"]
    assert report["service"]["running"] and report["outbox"] == []
    assert state["status"] == "segmented" and state["instances"] == 12
    assert state["sent"] == {f"PACS@127.0.0.1:{pacs.port}": second.SOPInstanceUID}


def _other_objects(mr: Path) -> list[Dataset]:
    """A text SR and a CT image, as a scanner's association may carry beside an MR series."""
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.Modality = generate_uid(), generate_uid(), "SR"
    ct = pydicom.dcmread(mr)
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ct.SeriesInstanceUID, ct.Modality = generate_uid(), "CT"
    return [sr, ct]


def test_unknown_callers_other_objects_and_the_watch_folder(
    tmp_path: Path, model_folder: Path, pacs, start_service
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    files = mr_series(tmp_path / "series", "1.2.826.0.1.3680043.8.498.78")
    service = start_service("--send-to", f"PACS@127.0.0.1:{pacs.port}", "--allow", "SCANNER@127.0.0.1",
                            "--watch", str(watch), "--settle", "0.5", "--series-timeout", "0.5")
    assert send(files, service.port, calling="INTRUDER") is None  # rejected at association time
    assert not (service.storage / "series").exists() or not any((service.storage / "series").iterdir())

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", service.port, ae_title="ATRIUMSEG")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()

    others = _other_objects(files[0])
    for i, dataset in enumerate(others):
        dataset.save_as(tmp_path / f"other_{i}.dcm", enforce_file_format=True)
    statuses = send([tmp_path / "other_0.dcm", *files[:6], tmp_path / "other_1.dcm", *files[6:]], service.port)
    assert statuses == [0x0122] + [0] * 6 + [0x0122] + [0] * 6
    wait_until(lambda: len(pacs.segs()) == 1, 120, "the MR series' SEG at the PACS", service)
    refused = [json.loads(line) for line in (service.storage / "refused.jsonl").read_text().splitlines()]
    assert [r["sop_instance"] for r in refused] == [d.SOPInstanceUID for d in others]
    assert all("not an MR image" in r["reason"] and r["caller"] == "SCANNER" for r in refused)

    shape = (36, 38, 24)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5)), seed=3)
    write_nifti(tmp_path / "p3.nii.gz", case.image, case.affine)
    before = (tmp_path / "p3.nii.gz").read_bytes()
    (tmp_path / "p3.nii.gz").rename(watch / "p3.nii.gz")
    out = tmp_path / "out"
    wait_until(lambda: (out / "p3.nii.gz").exists() and "watch" in service.log(), 120, "the watched mask", service)
    reference = _reference_mask(watch, tmp_path / "reference", model_folder, "p3")
    np.testing.assert_array_equal(np.asarray(nib.load(out / "p3.nii.gz").dataobj), np.asarray(reference.dataobj))
    assert (watch / "p3.nii.gz").read_bytes() == before and sorted(p.name for p in watch.iterdir()) == ["p3.nii.gz"]
    assert (out / ".atriumseg" / "records" / "p3.json").exists()
