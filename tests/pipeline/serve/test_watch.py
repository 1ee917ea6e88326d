"""The watch folder hands on an entry once it stopped changing for the settle time, once per content."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from atriumseg.pipeline.serve.watch import Watcher


def _watcher(folder: Path, handed: list[Path], skip: frozenset[Path] = frozenset()) -> Watcher:
    return Watcher(folder, settle=10.0, submit=handed.append, skip=skip)


def test_a_file_is_handed_on_after_it_settled_and_again_only_when_it_changes(tmp_path: Path) -> None:
    handed: list[Path] = []
    watcher = _watcher(tmp_path, handed)
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"part")
    assert watcher.poll(now=100.0) == []
    scan.write_bytes(b"part and the rest")  # still being copied
    assert watcher.poll(now=105.0) == [] and watcher.poll(now=114.0) == []
    assert watcher.poll(now=115.0) == [scan]
    assert watcher.poll(now=200.0) == []  # handed once
    scan.write_bytes(b"a new version of it")
    os.utime(scan, ns=(1, 1))
    assert watcher.poll(now=300.0) == [] and watcher.poll(now=310.0) == [scan]
    assert scan.read_bytes() == b"a new version of it"  # never modified


def test_a_folder_settles_when_none_of_its_files_changes_and_hidden_entries_are_left(tmp_path: Path) -> None:
    handed: list[Path] = []
    watcher = _watcher(tmp_path, handed, skip=frozenset({(tmp_path / "out").resolve()}))
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"x")
    (tmp_path / ".partial").write_bytes(b"y")
    (tmp_path / "out").mkdir()
    watcher.poll(now=0.0)
    (series / "2.dcm").write_bytes(b"z")
    assert watcher.poll(now=9.0) == [] and watcher.poll(now=18.0) == []
    assert watcher.poll(now=19.0) == [series] and handed == [series]
    assert sorted(p.name for p in series.iterdir()) == ["1.dcm", "2.dcm"]


def test_a_pass_that_raises_is_logged_and_the_watch_goes_on(tmp_path: Path, monkeypatch, caplog) -> None:
    handed: list[Path] = []
    watcher = Watcher(tmp_path, settle=0.2, submit=handed.append, skip=frozenset())
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
