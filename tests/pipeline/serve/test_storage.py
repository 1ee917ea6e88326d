"""The storage folder: instances written whole, series identified by their SOP Instance UIDs, refusals recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from atriumseg.pipeline.serve.storage import Storage, valid_uid
from serve.nodes import mr_series


def test_an_instance_is_stored_whole_under_its_uid_and_reads_back_equal(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    source = pydicom.dcmread(mr_series(tmp_path / "src", "1.2.840.9")[4])
    path = storage.write_instance("1.2.840.9", source)
    assert path == storage.series_folder("1.2.840.9") / f"{source.SOPInstanceUID}.dcm"
    again = pydicom.dcmread(path)
    assert again.SOPInstanceUID == source.SOPInstanceUID and again.PixelData == source.PixelData
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_the_digest_names_the_instances_not_their_bytes(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    files = mr_series(tmp_path / "src", "1.2.840.9")
    for path in files[:5]:
        storage.write_instance("s", pydicom.dcmread(path))
    first = storage.digest("s")
    changed = pydicom.dcmread(files[0])
    changed.PatientName = "Other^Name"
    storage.write_instance("s", changed)  # the same instance sent again, re-encoded
    assert storage.digest("s") == first
    storage.write_instance("s", pydicom.dcmread(files[5]))
    assert storage.digest("s") != first


def test_refused_objects_are_recorded_with_their_reason(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    storage.refuse("not an MR image", caller="SCANNER", sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    storage.refuse("cannot be decoded", caller="X")
    rows = [json.loads(line) for line in storage.refused_file.read_text(encoding="utf-8").splitlines()]
    assert [r["reason"] for r in rows] == ["not an MR image", "cannot be decoded"] and rows[0]["caller"] == "SCANNER"
    assert storage.refused_count() == 2 and Storage(tmp_path / "empty").refused_count() == 0


def test_uids_are_checked_before_they_name_a_folder() -> None:
    assert valid_uid("1.2.840.10008.1") and not valid_uid("../etc") and not valid_uid("1." + "2" * 70)
    assert not valid_uid("") and not valid_uid(None)
