"""The DICOM door on a full disk: 0xA700, never success, and every instance acknowledged is on disk, whole."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from serve.nodes import send, volume_series

pytestmark = pytest.mark.slow
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
