"""The watch folder hands on an entry once it stopped changing for the settle time, once per content; an entry
handed on again because it changed is segmented anew, while a restart does not redo finished inputs."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import nibabel as nib
from helpers import write_nifti

from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.serve.cases import segment_with
from atriumseg.pipeline.serve.options import ServeOptions
from atriumseg.pipeline.serve.service import Service
from atriumseg.pipeline.serve.status import format_status
from atriumseg.pipeline.serve.watch import Watcher
from atriumseg.synthetic import make_affine, synthetic_case
from serve.nodes import wait_until


def _watcher(folder: Path, handed: list[tuple[Path, bool]], skip: frozenset[Path] = frozenset()) -> Watcher:
    return Watcher(folder, settle=10.0, submit=lambda path, changed: handed.append((path, changed)), skip=skip)


def test_a_file_is_handed_on_after_it_settled_and_again_only_when_it_changes(tmp_path: Path) -> None:
    handed: list[tuple[Path, bool]] = []
    watcher = _watcher(tmp_path, handed)
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"part")
    assert watcher.poll(now=100.0) == [] and watcher.settling == ("scan.nii.gz",)
    scan.write_bytes(b"part and the rest")  # still being copied
    assert watcher.poll(now=105.0) == [] and watcher.poll(now=114.0) == []
    assert watcher.poll(now=115.0) == [scan] and watcher.settling == ()
    assert watcher.poll(now=200.0) == [] and watcher.settling == ()  # handed once
    scan.write_bytes(b"a new version of it")
    os.utime(scan, ns=(1, 1))
    assert watcher.poll(now=300.0) == [] and watcher.settling == ("scan.nii.gz",)
    assert watcher.poll(now=310.0) == [scan] and watcher.settling == ()
    assert scan.read_bytes() == b"a new version of it"  # never modified
    assert handed == [(scan, False), (scan, True)]  # the second time as changed: its outputs are redone


def test_a_file_that_is_not_an_image_is_left_alone_and_said_once(tmp_path: Path, caplog) -> None:
    handed: list[tuple[Path, bool]] = []
    watcher = _watcher(tmp_path, handed)
    (tmp_path / "notes.txt").write_text("from the technologist")
    (tmp_path / "scan.nii.gz").write_bytes(b"an image")
    with caplog.at_level(logging.INFO):
        watcher.poll(now=100.0)
        assert watcher.poll(now=200.0) == [tmp_path / "scan.nii.gz"] and watcher.poll(now=300.0) == []
    assert caplog.text.count("notes.txt: not an image file, left alone") == 1


def test_an_entry_removed_and_put_back_different_counts_as_changed(tmp_path: Path) -> None:
    handed: list[tuple[Path, bool]] = []
    watcher = _watcher(tmp_path, handed)
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"first patient")
    watcher.poll(now=0.0)
    assert watcher.poll(now=10.0) == [scan]
    scan.unlink()
    assert watcher.poll(now=20.0) == []
    scan.write_bytes(b"another patient, same name")
    watcher.poll(now=30.0)
    assert watcher.poll(now=40.0) == [scan] and handed == [(scan, False), (scan, True)]


def test_a_folder_settles_when_none_of_its_files_changes_and_hidden_entries_are_left(tmp_path: Path) -> None:
    handed: list[tuple[Path, bool]] = []
    watcher = _watcher(tmp_path, handed, skip=frozenset({(tmp_path / "out").resolve()}))
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"x")
    (tmp_path / ".partial").write_bytes(b"y")
    (tmp_path / "out").mkdir()
    watcher.poll(now=0.0)
    (series / "2.dcm").write_bytes(b"z")
    assert watcher.poll(now=9.0) == [] and watcher.poll(now=18.0) == []
    assert watcher.poll(now=19.0) == [series] and handed == [(series, False)]
    assert sorted(p.name for p in series.iterdir()) == ["1.dcm", "2.dcm"]


def test_a_pass_that_raises_is_logged_and_the_watch_goes_on(tmp_path: Path, monkeypatch, caplog) -> None:
    handed: list[Path] = []
    watcher = Watcher(tmp_path, settle=0.2, submit=lambda path, changed: handed.append(path), skip=frozenset())
    real_poll, failures = watcher.poll, iter([PermissionError(13, "Permission denied")])

    def poll_once_failing(now=None):
        for err in failures:
            raise err
        return real_poll() if now is None else real_poll(now)

    monkeypatch.setattr(watcher, "poll", poll_once_failing)
    monkeypatch.setattr("atriumseg.pipeline.serve.watch.PAUSE_AFTER_ERROR", 0.05)
    (tmp_path / "scan.nii.gz").write_bytes(b"whole")
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,))
    with caplog.at_level(logging.ERROR):
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not handed and time.monotonic() < deadline:
                time.sleep(0.05)
            assert handed == [tmp_path / "scan.nii.gz"] and thread.is_alive()
        finally:
            stop.set()
            thread.join(5)
    assert "watch: unexpected error" in caplog.text


def _nifti(path: Path, shape: tuple[int, int, int], seed: int) -> Path:
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5)), seed=seed)
    return write_nifti(path, case.image, case.affine)


def _watch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("watch ")]


def test_a_replaced_input_is_segmented_again_and_a_restart_reports_a_finished_one_done_earlier(
    tmp_path: Path, segmenter: Segmenter, caplog
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", watch=watch, settle=0.2)
    mask = options.output / "p3.nii.gz"
    caplog.set_level(logging.INFO, logger="atriumseg.serve")
    service = Service(segment_with(segmenter, options), options)
    service.start()
    try:
        _nifti(tmp_path / "first.nii.gz", (36, 38, 24), seed=3).rename(watch / "p3.nii.gz")
        wait_until(lambda: len(_watch_lines(caplog)) == 1, 120, "the first input segmented")
        assert nib.load(mask).shape == (36, 38, 24)
        _nifti(tmp_path / "second.nii.gz", (40, 34, 20), seed=4).rename(watch / "p3.nii.gz")  # replaced
        wait_until(lambda: len(_watch_lines(caplog)) == 2, 120, "the replaced input handled")
    finally:
        service.stop()
    assert nib.load(mask).shape == (40, 34, 20)  # made from the new input, not settled from the first one's record
    written = mask.stat().st_mtime_ns
    again = Service(segment_with(segmenter, options), options)  # a restart: nothing it finished is redone
    again.start()
    try:
        wait_until(lambda: len(_watch_lines(caplog)) == 3, 120, "the input seen after the restart")
    finally:
        again.stop()
    first, second, third = _watch_lines(caplog)
    assert ": ok: " in first and ": ok: " in second and mask.stat().st_mtime_ns == written
    assert ": skipped: done earlier (" in third and f"-> {mask}); not redone" in third


def test_the_status_names_what_is_settling_in_the_watch_folder(tmp_path: Path) -> None:
    watched = tmp_path / "in"
    watched.mkdir()
    options = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", watch=watched, settle=10.0)
    service = Service(lambda path, is_series, redo: [], options)
    (watched / "b.nii.gz").write_bytes(b"part")
    (watched / "a_series").mkdir()
    (watched / "a_series" / "1.dcm").write_bytes(b"x")
    (watched / "empty").mkdir()  # nothing in it yet: nothing to wait for
    service.watcher.poll(now=100.0)
    assert service.service_info()["settling"] == ["a_series", "b.nii.gz"]
    report = {"service": {**service.service_info(), "running": True, "pid": 7}, "series": [], "outbox": [],
              "refused": 0}
    assert format_status(report).splitlines()[0].endswith("queued: 0; settling in the watch folder: a_series, b.nii.gz")
    many = {**report, "service": {**report["service"], "settling": [f"case_{i}" for i in range(12)]}}
    assert format_status(many).splitlines()[0].endswith("case_3, case_4 and 7 more")
    service.watcher.poll(now=110.0)
    assert service.service_info()["settling"] == [] and "settling" not in format_status(
        {**report, "service": {**service.service_info(), "running": True, "pid": 7}})


def test_settling_forgets_an_entry_removed_and_a_folder_it_cannot_read(tmp_path: Path) -> None:
    watched = tmp_path / "in"
    watched.mkdir()
    watcher = _watcher(watched, [])
    for name in ("a.nii.gz", "b.nii.gz"):
        (watched / name).write_bytes(b"part")
    watcher.poll(now=100.0)
    assert watcher.settling == ("a.nii.gz", "b.nii.gz")
    (watched / "a.nii.gz").unlink()  # taken away before it settled
    watcher.poll(now=101.0)
    assert watcher.settling == ("b.nii.gz",)
    (watched / "b.nii.gz").unlink()
    watched.rmdir()  # the folder itself gone (an unmounted share): nothing can be said to settle there
    assert watcher.poll(now=102.0) == [] and watcher.settling == ()
