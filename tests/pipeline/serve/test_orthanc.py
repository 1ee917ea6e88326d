"""A real PACS: Orthanc sends a study to atriumseg (C-STORE through its REST API) and gets the SEG back in the
same study."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest

from serve.nodes import HAVE_ORTHANC, REQUIRE_PROGRAMS, Orthanc, free_port, mr_series, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_ORTHANC and not REQUIRE_PROGRAMS,
                       reason="the Orthanc binary is not installed (Debian package 'orthanc'; .ci/run installs it)"),
]


def test_orthanc_sends_a_series_and_finds_the_seg_in_the_same_study(tmp_path: Path, start_service) -> None:
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", atriumseg_port=port)
    service = start_service("--allow", "ORTHANC@127.0.0.1", "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
                            "--series-timeout", "1", port=port)
    orthanc.start()
    try:
        files = mr_series(tmp_path / "series", "1.2.826.0.1.3680043.8.498.90")
        for path in files:
            orthanc.post("/instances", path.read_bytes())
        (study,) = orthanc.get("/studies")
        job = orthanc.post("/modalities/atriumseg/store", json.dumps({"Resources": [study]}).encode())
        assert job.get("FailedInstancesCount", 0) == 0, job

        def seg_series() -> list[dict]:
            series = [orthanc.get(f"/series/{s}") for s in orthanc.get(f"/studies/{study}")["Series"]]
            return [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]

        (found,) = wait_until(seg_series, 120, "the SEG in Orthanc's study", service)
        seg = pydicom.dcmread(io.BytesIO(orthanc.file(found["Instances"][0])))
        source = pydicom.dcmread(files[0])
        assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
        assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
        referenced = {item.ReferencedSOPInstanceUID for series in seg.ReferencedSeriesSequence
                      for item in series.ReferencedInstanceSequence}
        assert referenced == {pydicom.dcmread(f).SOPInstanceUID for f in files}
        sent = {f"ORTHANC@127.0.0.1:{orthanc.dicom_port}": seg.SOPInstanceUID}
        wait_until(lambda: service.state(source.SeriesInstanceUID)["sent"] == sent, 30, "the delivery recorded")
    finally:
        orthanc.stop()
