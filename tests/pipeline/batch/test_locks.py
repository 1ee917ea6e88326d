"""Per-case locks: one process at a time on a case, never a stale lock; batch runs as real processes, killed
with SIGKILL mid-write, two at once on one folder, a FIFO among the inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_nifti

from atriumseg.pipeline.batch.locks import LOCKS, CaseBusy, lock_case
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.report import INTERRUPTED, RECORDS, collect, is_complete, rebuild_report
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (36, 38, 24)
CHILD = Path(__file__).with_name("batch_child.py")


def _study(folder: Path, seeds: range) -> Path:
    folder.mkdir(parents=True)
    for seed in seeds:
        case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5)), seed=seed)
        write_nifti(folder / f"p{seed}.nii.gz", case.image, case.affine)
    return folder


def _start(model: Path, out: Path, inputs: list[Path], *options: str) -> subprocess.Popen:
    command = [sys.executable, str(CHILD), str(model), str(out), *map(str, inputs), *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"the child ended early: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_lock_is_exclusive_names_its_holder_and_leaves_no_file(tmp_path: Path) -> None:
    lock = lock_case(tmp_path, "p1")
    path = tmp_path / LOCKS / "p1.lock"
    assert json.loads(path.read_text())["pid"] == os.getpid()
    with pytest.raises(CaseBusy, match=f"being processed by PID {os.getpid()}"):
        lock_case(tmp_path, "p1")
    other = lock_case(tmp_path, "p2")
    lock.release()
    lock.release()  # idempotent
    assert not path.exists()
    again = lock_case(tmp_path, "p1")
    again.release()
    other.release()
    assert list((tmp_path / LOCKS).iterdir()) == []


def test_the_lock_file_a_dead_process_left_is_taken_again(tmp_path: Path) -> None:
    path = tmp_path / LOCKS / "p1.lock"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 999999999, "host": "elsewhere"}))  # no flock is held on it
    lock = lock_case(tmp_path, "p1")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()

@pytest.mark.slow
def test_kill_9_while_writing_a_record_leaves_a_truthful_report_and_a_rerun_finishes_the_case(
    tmp_path: Path, model_folder: Path, segmenter
) -> None:
    study, out, parked = _study(tmp_path / "in", range(70, 73)), tmp_path / "out", tmp_path / "parked"
    child = _start(model_folder, out, [study], "--hang-in-ok-record", str(parked))
    try:
        _wait_for(parked, child)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    orphans = list((out / RECORDS).glob(".tmp-*"))
    assert len(orphans) == 1 and orphans[0].stat().st_size == 0, orphans  # what kill -9 left: a 0-byte record
    assert (out / "p70.nii.gz").is_file()  # the mask was written, its final record was not

    report = {r.case: r for r in rebuild_report(out)}
    assert report["p70"].status == "failed" and report["p70"].reason == INTERRUPTED, report["p70"]
    assert not list((out / RECORDS).glob(".tmp-*")), "the dead writer's temporary record was not cleaned up"

    outcome = run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False))
    results = {r.case: r for r in outcome.results}
    assert [results[c].status for c in ("p70", "p71", "p72")] == ["ok"] * 3, results
    assert results["p70"].volume_ml > 0 and results["p70"].reason == ""
    assert all(is_complete(r) for r in collect(out))
    assert np.asanyarray(nib.load(out / "p70.nii.gz").dataobj).sum() == results["p70"].voxels
    assert not list(out.rglob(".tmp-*")) and not list((out / ".atriumseg" / "locks").glob("*.lock"))


@pytest.mark.slow
def test_two_processes_on_the_same_batch_share_the_cases_and_never_fail_each_other(
    tmp_path: Path, model_folder: Path
) -> None:
    study, out, go = _study(tmp_path / "in", range(80, 86)), tmp_path / "out", tmp_path / "barrier" / "go"
    go.parent.mkdir()
    children = [_start(model_folder, out, [study], "--wait-for", str(go), "--seconds-per-case", "0.4")
                for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(go.parent.glob("ready-*"))) < 2:
        assert all(c.poll() is None for c in children) and time.monotonic() < deadline, "children did not start"
        time.sleep(0.05)
    go.touch()
    rebuilds = 0
    while any(c.poll() is None for c in children):  # the report is rebuilt while both write records
        rebuild_report(out)
        rebuilds += 1
        time.sleep(0.05)
    ends = [c.communicate() for c in children]
    assert [c.returncode for c in children] == [0, 0], ends
    runs = [json.loads(stdout) for stdout, _ in ends]
    cases = [f"p{seed}" for seed in range(80, 86)]
    segmented = sorted(name for run in runs for name in run["segmented"])
    assert segmented == cases, f"each case must be segmented exactly once, got {segmented}"
    busy = []
    for run, other in zip(runs, runs[::-1], strict=True):
        for case, (status, reason) in run["results"].items():
            assert status in ("ok", "skipped"), (case, status, reason)
            if status == "skipped":
                assert reason.endswith(f"being processed by PID {other['pid']}"), reason
                busy.append(case)
    assert busy, "the two runs never met on a case"
    final = {r.case: r for r in rebuild_report(out)}
    assert sorted(final) == cases and all(is_complete(r) for r in final.values()), final
    assert rebuilds > 0


@pytest.mark.slow
def test_a_fifo_among_the_inputs_never_blocks_the_run(tmp_path: Path, model_folder: Path) -> None:
    study = _study(tmp_path / "in", range(90, 91))
    os.mkfifo(study / "pipe.nii.gz")
    explicit = tmp_path / "named.nrrd"
    os.mkfifo(explicit)
    child = _start(model_folder, tmp_path / "out", [study, explicit])
    try:
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, stderr
    results = json.loads(stdout)["results"]
    assert results["p90"][0] == "ok"
    assert results["pipe.nii.gz"] == ["skipped", "a FIFO (named pipe), not a regular file"]
    assert results["named"][0] == "failed" and "FIFO" in results["named"][1], results["named"]
