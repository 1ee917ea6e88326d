"""Reruns finish what is incomplete and never redo what is complete; records that cannot be read, and cases
another process holds, never break a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import write_nifti

from atriumseg.pipeline.analysis import mesh
from atriumseg.pipeline.batch.locks import lock_case
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.report import RECORDS, CaseResult, collect, is_complete, rebuild_report, record_path
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.batch.segment import segment_case
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (36, 38, 24)


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    for seed in (41, 42, 43):
        case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS", (5, 0, 0)), seed=seed)
        write_nifti(folder / f"p{seed}.nii.gz", case.image, case.affine)
    return folder


class Counting(list):
    """The per-case step of a run, noting the name of each case it sends through the network, in order."""

    def __call__(self, segmenter, planned, volume, options):
        self.append(planned.case.name)
        return segment_case(segmenter, planned, volume, options)


def _run(segmenter, study: Path, out: Path, segment=segment_case, **options) -> dict[str, CaseResult]:
    outcome = run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False, **options), segment=segment)
    return {r.case: r for r in outcome.results}


def test_a_case_that_failed_after_its_mask_was_written_is_finished_by_the_rerun(
    study: Path, tmp_path: Path, segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, real_save = tmp_path / "out", mesh.save_mesh

    def broken_for_p42(surface, path, overwrite=False):
        if Path(path).name == "p42.stl":
            raise OSError("mesh device error")
        return real_save(surface, path, overwrite)

    monkeypatch.setattr(mesh, "save_mesh", broken_for_p42)
    first = _run(segmenter, study, out, mesh="stl")
    assert first["p42"].status == "failed" and "mesh device error" in first["p42"].reason
    assert (out / "p42.nii.gz").is_file() and not (out / "p42.stl").exists()
    monkeypatch.setattr(mesh, "save_mesh", real_save)
    second = _run(segmenter, study, out, mesh="stl")
    assert second["p42"].status == "ok" and second["p42"].volume_ml > 0, second["p42"]
    assert (out / "p42.stl").is_file() and all(is_complete(r) for r in collect(out))


def test_a_rerun_redoes_exactly_the_incomplete_cases(study: Path, tmp_path: Path, segmenter) -> None:
    out, segmented = tmp_path / "out", Counting()
    _run(segmenter, study, out, segmented, probabilities=True)
    assert segmented == ["p41", "p42", "p43"]
    (out / "p42_probabilities.nii.gz").unlink()  # an output the record lists is gone
    record_path(out, "p43").write_text('{"case": "p43", "stat')  # a record cut short
    segmented.clear()
    again = _run(segmenter, study, out, segmented, probabilities=True)
    assert segmented == ["p42", "p43"], "complete cases must not be redone, incomplete ones must be"
    assert all(again[c].status == "ok" and again[c].reason == "" for c in again), again
    assert (out / "p42_probabilities.nii.gz").is_file() and all(is_complete(r) for r in collect(out))
    segmented.clear()
    assert [r.status for r in _run(segmenter, study, out, segmented, probabilities=True).values()] == ["ok"] * 3
    assert segmented == []


def test_unreadable_and_temporary_records_never_break_a_report(study: Path, tmp_path: Path, segmenter) -> None:
    out = tmp_path / "out"
    _run(segmenter, study, out)
    records = out / RECORDS
    (records / ".tmp-0badc0de-999999-abcd1234-p41.json").write_text("")  # a writer killed mid-write
    stale = records / ".tmp-12345678-p42.json"  # an older temporary name, untouched for two hours
    stale.write_text('{"case": ')
    os.utime(stale, (stale.stat().st_mtime - 7200,) * 2)
    record_path(out, "junk").write_bytes(b"\xff\xfe not json")
    record_path(out, "list").write_text("[1, 2]")
    results = rebuild_report(out)
    assert [(r.case, r.status) for r in results] == [("p41", "ok"), ("p42", "ok"), ("p43", "ok")]
    assert not stale.exists(), "a stale temporary record was left"


def test_a_case_locked_by_another_process_is_skipped_and_its_record_left_alone(
    study: Path, tmp_path: Path, segmenter
) -> None:
    out = tmp_path / "out"
    lock = lock_case(out, "p42")
    try:
        results = _run(segmenter, study, out)
    finally:
        lock.release()
    assert results["p42"].status == "skipped"
    assert results["p42"].reason.endswith(f"being processed by PID {os.getpid()}"), results["p42"].reason
    assert not record_path(out, "p42").exists() and not (out / "p42.nii.gz").exists()
    assert results["p41"].status == results["p43"].status == "ok"
    assert _run(segmenter, study, out)["p42"].status == "ok"
