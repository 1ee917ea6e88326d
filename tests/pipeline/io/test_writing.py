"""Writing outputs: never half a file, an existing file kept unless asked, an unusable folder refused up front,
temporary files of dead writers (and only those) cleaned up."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from atriumseg.pipeline.io import writing
from atriumseg.pipeline.io.writing import (
    OutputFolderError,
    check_output_file,
    check_output_folder,
    is_stale,
    not_a_folder,
    remove_stale_temporaries,
    temporary_path,
    write_atomically,
    write_image,
    write_together,
)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.csv"]
    write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.csv"]


@pytest.mark.parametrize("name", ["mask.nii.gz", "mask.nii", "mask.mha"])
def test_an_existing_mask_is_kept_unless_overwrite(tmp_path: Path, name: str) -> None:
    mask = np.zeros((8, 9, 10), np.uint8)
    mask[2:5, 3:6, 4:7] = 1
    image = nib.Nifti1Image(mask, np.diag([1.5, 1.5, 2.0, 1.0]))
    if name.endswith(".mha"):
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(mask.transpose(2, 1, 0))
    target = tmp_path / name
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_image(image, target)
    assert target.read_bytes() == b"keep me"
    write_image(image, target, overwrite=True)
    if name.endswith(".mha"):
        import SimpleITK as sitk

        back = sitk.GetArrayFromImage(sitk.ReadImage(str(target))).transpose(2, 1, 0)
    else:
        back = np.asanyarray(nib.load(target).dataobj)
    np.testing.assert_array_equal(back, mask)


def test_a_file_another_writer_puts_there_meanwhile_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "mask.nii.gz"

    def racing(tmp: Path) -> None:  # another process finishes the same output while this one writes
        tmp.write_text("ours")
        target.write_text("theirs")

    with pytest.raises(FileExistsError, match="overwrite"):
        write_atomically(target, racing, overwrite=False)
    assert target.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    write_atomically(target, racing, overwrite=True)
    assert target.read_text() == "ours" and [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    fresh = tmp_path / "new.csv"
    assert write_atomically(fresh, lambda tmp: tmp.write_text("new"), overwrite=False) == fresh
    assert fresh.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz", "new.csv"]


def _no_links(*args: object) -> None:
    """``os.link`` on a FAT volume or a share without hard links."""
    raise OSError(errno.EPERM, "Operation not permitted")


def test_without_hard_links_a_file_is_still_published_and_an_existing_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writing.os, "link", _no_links)
    target = tmp_path / "mask.nii.gz"
    write_atomically(target, lambda tmp: tmp.write_text("first"), overwrite=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_atomically(target, lambda tmp: tmp.write_text("second"), overwrite=False)
    assert target.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]


@pytest.mark.parametrize("links", [True, False])
def test_files_that_belong_together_are_published_all_or_none_without_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    if not links:  # renamed after a last look
        monkeypatch.setattr(writing.os, "link", _no_links)
    weights, card = tmp_path / "model.safetensors", tmp_path / "card.json"

    def racing(tmp: Path) -> None:  # another writer finishes the card while this one writes it
        tmp.write_text("our card")
        card.write_text("their card")

    with pytest.raises(FileExistsError, match="card.json"):
        write_together({weights: lambda tmp: tmp.write_text("our weights"), card: racing}, overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"] and card.read_text() == "their card"
    card.unlink()
    write_together({weights: lambda tmp: tmp.write_text("w"), card: lambda tmp: tmp.write_text("c")}, overwrite=False)
    assert (weights.read_text(), card.read_text()) == ("w", "c")


def test_a_full_disk_midway_takes_back_what_was_published_without_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link, links = os.link, []

    def link_then_full(source, target) -> None:  # the second name needs a folder block the disk no longer has
        links.append(target)
        if len(links) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_link(source, target)

    monkeypatch.setattr(writing.os, "link", link_then_full)
    files = {tmp_path / name: (lambda tmp: tmp.write_text("x")) for name in ("model.safetensors", "card.json")}
    with pytest.raises(OSError, match="No space"):
        write_together(files, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_is_created_or_refused_with_the_reason(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(OutputFolderError, match="cannot create the output folder"):
        check_output_folder(tmp_path / "file" / "masks")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "file"]


def test_only_temporaries_of_dead_writers_are_stale(tmp_path: Path) -> None:
    mine = temporary_path(tmp_path / "report.csv")
    mine.write_text("being written")
    dead = tmp_path / mine.name.replace(f"-{os.getpid()}-", "-999999999-")
    dead.write_text("left by a dead process")
    other_machine = tmp_path / ".tmp-0badc0de-12-abcd1234-x.json"
    other_machine.write_text("fresh")
    old = tmp_path / ".tmp-12345678-x.json"  # an earlier version's name
    old.write_text("old")
    os.utime(old, (time.time() - 2 * writing.STALE_AFTER_S,) * 2)
    reused = tmp_path / mine.name.replace(mine.name.split("-")[3], "0000abcd")  # a live PID, another writer's file
    reused.write_text("its writer died, and this process took its PID")
    os.utime(reused, (time.time() - 2 * writing.STALE_AFTER_S,) * 2)
    staging = tmp_path / dead.name.replace("report.csv", "bundle")
    staging.mkdir()  # a dead exporter's staging folder: not a file to unlink
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    assert [is_stale(p) for p in (mine, dead, other_machine, old, reused, keep)] == [
        False, True, False, True, True, False]
    assert sorted(p.name for p in remove_stale_temporaries(tmp_path)) == sorted([dead.name, old.name, reused.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_machine.name, staging.name,
                                                                  keep.name])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (simulated below)")
def test_a_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputFolderError, match="cannot write into the output folder"):
            check_output_folder(folder)
    finally:
        folder.chmod(0o755)


def test_a_folder_refusing_writes_is_refused_as_root_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    real_open = os.open

    def read_only(path, flags, *args):  # a folder of mode 555 (root writes anything there: simulated)
        if Path(path).parent == folder and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(writing.os, "open", read_only)
    with pytest.raises(OutputFolderError, match=r"ro: cannot write into the output folder \(Permission denied\)"):
        check_output_folder(folder)
    assert check_output_folder(tmp_path) == tmp_path and not list(folder.iterdir())  # no probe left behind


def test_a_signal_between_the_renames_of_files_that_belong_together_waits_for_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card, weights = tmp_path / "card.json", tmp_path / "model.safetensors"
    card.write_text("old card")
    weights.write_text("old weights")
    real_replace = os.replace

    def replace_then_sigterm(source, target) -> None:  # as `train` turns SIGTERM into KeyboardInterrupt
        real_replace(source, target)
        os.kill(os.getpid(), signal.SIGTERM)

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writing.os, "replace", replace_then_sigterm)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):  # delivered, once both are in place
            write_together({weights: lambda tmp: tmp.write_text("new weights"),
                            card: lambda tmp: tmp.write_text("new card")})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (weights.read_text(), card.read_text()) == ("new weights", "new card")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "model.safetensors"]


def test_an_output_file_is_checked_without_creating_anything(tmp_path: Path) -> None:
    check_output_file(tmp_path / "new" / "deeper" / "e.csv", overwrite=False)  # its folders are made when written
    check_output_file(Path("e.csv"), overwrite=False)  # in the working folder
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(OutputFolderError, match="afile: exists and is not a folder"):
        check_output_file(tmp_path / "afile" / "sub" / "e.csv", overwrite=True)
    with pytest.raises(OutputFolderError, match="is a folder; give a file name"):
        check_output_file(tmp_path, overwrite=True)
    (tmp_path / "link.csv").symlink_to(tmp_path / "nowhere.csv")  # a dangling link is a name taken too
    with pytest.raises(FileExistsError, match=r"link.csv exists; pass overwrite=True \(--overwrite\)"):
        check_output_file(tmp_path / "link.csv", overwrite=False)
    check_output_file(tmp_path / "link.csv", overwrite=True)


def test_not_a_folder_says_why_a_path_is_no_folder(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert not_a_folder(tmp_path) is None
    assert not_a_folder(tmp_path / "afile") == "exists and is not a folder"
    assert not_a_folder(tmp_path / "nowhere") == "no such folder"
