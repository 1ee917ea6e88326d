"""Finding the cases: list files as Excel writes them, folders with pipes, symlink loops and DICOM series."""

from __future__ import annotations

import codecs
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import write_dicom_series, write_itk, write_nifti

from atriumseg.pipeline.batch import inputs as inputs_module
from atriumseg.pipeline.batch.inputs import discover, read_list
from atriumseg.pipeline.io.volumes import ImageReadError, read_image
from atriumseg.synthetic import make_affine, synthetic_case


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts the main thread, even inside a blocking open()."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "name, data",
    [
        ("excel.csv", codecs.BOM_UTF8 + "path,comment\r\nin/a.nii.gz,first\r\nin/é b.nii.gz,second\r\n".encode()),
        ("unicode.txt", "# cases\nin/a.nii.gz\nin/é b.nii.gz\n".encode("utf-16")),
        ("bom.txt", codecs.BOM_UTF8 + b"in/a.nii.gz\nin/\xc3\xa9 b.nii.gz\n"),
    ],
)
def test_list_files_as_editors_save_them_are_read(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    assert read_list(tmp_path / name) == [str(tmp_path / "in" / "a.nii.gz"), str(tmp_path / "in" / "é b.nii.gz")]


def test_a_quoted_csv_path_may_hold_a_comma_or_a_line_break(tmp_path: Path) -> None:
    listing = tmp_path / "cases.csv"
    listing.write_bytes(b'path,note\r\n"scans/odd\nname.nii.gz",first\r\n'
                        b'"a, b.nii.gz","two\r\nlines"\r\nc.nii.gz,x\r\n')
    assert read_list(listing) == [str(tmp_path / "scans" / "odd\nname.nii.gz"), str(tmp_path / "a, b.nii.gz"),
                                  str(tmp_path / "c.nii.gz")]


@pytest.mark.parametrize(
    "data, phrase",
    [(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"), ("in/é.nii.gz\n".encode("latin-1"), "not UTF-8")],
)
def test_a_list_file_that_is_not_text_is_a_clear_value_error(tmp_path: Path, data: bytes, phrase: str) -> None:
    (tmp_path / "cases.txt").write_bytes(data)
    with pytest.raises(ValueError, match=phrase):
        read_list(tmp_path / "cases.txt")


def test_pipes_are_never_opened(tmp_path: Path) -> None:
    write_nifti(tmp_path / "a.nii.gz", np.ones((20, 20, 20), np.float32), np.eye(4))
    os.mkfifo(tmp_path / "pipe.nii.gz")
    cases, strays = discover([tmp_path])
    assert [c.name for c in cases] == ["a"]
    assert [(s.path.name, s.reason) for s in strays] == [("pipe.nii.gz", "a FIFO (named pipe), not a regular file")]
    with time_limit(10), pytest.raises(ImageReadError, match="FIFO"):
        read_image(tmp_path / "pipe.nii.gz")


def test_symlink_loops_end_and_each_folder_is_visited_once(tmp_path: Path) -> None:
    (tmp_path / "study" / "a" / "b").mkdir(parents=True)
    write_nifti(tmp_path / "study" / "a" / "x.nii.gz", np.ones((20, 20, 20), np.float32), np.eye(4))
    (tmp_path / "study" / "a" / "b" / "up").symlink_to("..")
    (tmp_path / "study" / "a" / "b" / "again").symlink_to("../../a")
    (tmp_path / "study" / "alias").symlink_to("a")
    for inputs in ([tmp_path / "study"], [f"{tmp_path}/study/**/*.nii.gz"]):
        with time_limit(20):
            cases, strays = discover(inputs)
        assert [(c.name, c.path.resolve()) for c in cases] == [("x", tmp_path / "study" / "a" / "x.nii.gz")]
        assert strays == []


def test_discover_names_each_dicom_series_and_skips_strays(tmp_path: Path) -> None:
    study = tmp_path / "study"
    shape = (36, 38, 24)
    a, b = (synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=s) for s in (60, 61))
    write_dicom_series(study / "exam", a.image, a.affine, uid="1.2.3.4.1", prefix="a_")
    write_dicom_series(study / "exam", b.image, b.affine, uid="1.2.3.4.2", prefix="b_")
    (study / "readme.txt").write_text("x")
    cases, strays = discover([study])
    assert sorted(c.series_uid for c in cases) == ["1.2.3.4.1", "1.2.3.4.2"]
    assert len({c.name for c in cases}) == 2 and all(c.name.startswith("exam_") for c in cases)
    assert [s.path.name for s in strays] == ["readme.txt"]


def test_the_data_files_of_detached_headers_are_theirs_not_strays(tmp_path: Path) -> None:
    """SimpleITK writes ``s.mhd`` + ``s.raw`` and ``n.nhdr`` + its data file; only the headers are cases, found by a
    folder search or a glob, wherever the header puts its data file, and a data file no header names is a stray."""
    shape = (20, 18, 8)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=65)
    (tmp_path / "scans").mkdir()
    write_itk(tmp_path / "scans" / "s.mhd", case.image, case.affine)
    write_itk(tmp_path / "scans" / "n.nhdr", case.image, case.affine)
    written = sorted(p.name for p in (tmp_path / "scans").iterdir())
    assert len(written) == 4, written  # two headers, two data files
    (tmp_path / "scans" / "orphan.raw").write_bytes(b"x")
    header = (tmp_path / "scans" / "s.mhd").read_text()
    (tmp_path / "scans" / "data").mkdir()  # a header whose data file lies in a subfolder
    (tmp_path / "scans" / "s.raw").rename(tmp_path / "scans" / "data" / "t.raw")
    (tmp_path / "scans" / "s.mhd").write_text(header.replace("ElementDataFile = s.raw", "ElementDataFile = data/t.raw"))
    assert "data/t.raw" in (tmp_path / "scans" / "s.mhd").read_text()
    for inputs in ([tmp_path / "scans"], [f"{tmp_path}/scans/*"], [f"{tmp_path}/scans/**/*"]):
        cases, strays = discover(inputs)
        assert sorted(c.name for c in cases) == ["n", "s"] and [s.path.name for s in strays] == ["orphan.raw"], inputs
    assert all(read_image(c.path).tensor.shape[1:] == shape for c in cases)


def test_a_series_whose_files_itk_cannot_open_is_a_case_that_fails_with_its_reason(tmp_path: Path) -> None:
    shape = (36, 38, 24)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=63)
    series = write_dicom_series(tmp_path / "study" / "exam", case.image, case.affine)
    write_nifti(tmp_path / "study" / "other.nii.gz", case.image, case.affine)
    for path in sorted(series.glob("*.dcm"))[:-1]:  # GDCM still lists files without the 128-byte preamble; ITK not
        dataset = pydicom.dcmread(path)
        dataset.preamble = None
        dataset.save_as(path, enforce_file_format=False)
    cases, strays = discover([tmp_path / "study"])
    assert sorted(c.name for c in cases) == ["exam", "other"] and strays == []
    with pytest.raises(ImageReadError, match="exam: unreadable or corrupt image"):
        read_image(next(c.path for c in cases if c.name == "exam"))


def test_a_dicom_folder_named_dot_is_named_after_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (36, 38, 24)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=64)
    monkeypatch.chdir(write_dicom_series(tmp_path / "exam", case.image, case.affine))
    assert [c.name for c in discover(["."])[0]] == ["exam"]
    assert [c.name for c in discover(["./"])[0]] == ["exam"]
    (tmp_path / "patient01").symlink_to(tmp_path / "exam")  # a link is named as the user named it
    assert [c.name for c in discover([tmp_path / "patient01"])[0]] == ["patient01"]


def test_a_file_that_cannot_be_opened_does_not_stop_the_search(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    study = tmp_path / "study"
    shape = (36, 38, 24)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=62)
    study.mkdir()
    write_nifti(study / "good.nii.gz", case.image, case.affine)
    (study / "locked").write_bytes(bytes(300))  # another user's file, mode 000 (root reads anything: simulated)
    real_open = open

    def refuse_locked(path, *args, **kwargs):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(inputs_module, "open", refuse_locked, raising=False)
    cases, strays = discover([study])
    assert [c.name for c in cases] == ["good"] and [s.path.name for s in strays] == ["locked"]
