"""The plan of a run: outputs never over an input, never read back as inputs, one name per case; reruns finish
what is incomplete and never redo what is complete; records that cannot be read never break a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import write_dicom_series, write_itk, write_nifti

from atriumseg.pipeline.analysis import mesh
from atriumseg.pipeline.batch import report
from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.locks import lock_case
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.plan import case_outputs
from atriumseg.pipeline.batch.report import RECORDS, CaseResult, collect, is_complete, rebuild_report, record_path
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.batch.segment import segment_case
from atriumseg.pipeline.io.names import case_name
from atriumseg.pipeline.io.writing import OutputFolderError, check_output_folder
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (36, 38, 24)


def _case(seed: int):
    return synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "LPS", (0, 8, 0)), seed=seed)


def _nifti(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    case = _case(seed)
    return write_nifti(path, case.image, case.affine)


def _run(segmenter, inputs: list[Path], out: Path, **options) -> dict[str, report.CaseResult]:
    outcome = run_batch(segmenter, inputs, BatchOptions(output=out, show_progress=False, **options))
    return {r.case: r for r in outcome.results}


def _dicom_with_a_slice_named(folder: Path, name: str) -> Path:
    case = _case(5)
    write_dicom_series(folder, case.image / case.image.max() * 2000, case.affine)
    (folder / "slice_000.dcm").rename(folder / name)
    return folder / name


@pytest.mark.parametrize(
    "layout, options",
    [
        ("mask over its NIfTI input", {}),
        ("mask over its NRRD input (--format same)", {"fmt": "same"}),
        ("mesh over a DICOM slice file", {"mesh": "stl"}),
    ],
)
def test_an_output_is_never_written_over_an_input_even_with_overwrite(
    tmp_path: Path, segmenter, layout: str, options: dict
) -> None:
    folder = tmp_path / "study"
    if "NIfTI" in layout:
        victim = _nifti(folder / "a.nii.gz", 1)
    elif "NRRD" in layout:
        folder.mkdir()
        victim = write_itk(folder / "a.nrrd", _case(1).image, _case(1).affine)
    else:
        folder = folder / "exam"  # segment exam -o exam --mesh stl: the mesh exam.stl would replace a slice
        victim = _dicom_with_a_slice_named(folder, "exam.stl")
    before = victim.read_bytes()
    results = _run(segmenter, [folder], folder, overwrite=True, **options)
    refused = next(r for r in results.values() if r.input in (str(victim), str(victim.parent)))
    assert refused.status == "failed" and "would overwrite an input of this run" in refused.reason, refused
    assert victim.read_bytes() == before, "an input was modified"


@pytest.mark.parametrize("layout", ["output folder inside the input folder", "output folder is the input folder"])
def test_a_rerun_never_takes_earlier_outputs_for_inputs(tmp_path: Path, segmenter, layout: str) -> None:
    study = tmp_path / "study"
    for seed in (11, 12):
        _nifti(study / f"p{seed}.nii.gz", seed)
    write_itk(study / "q13.nrrd", _case(13).image, _case(13).affine)
    if layout.endswith("inside the input folder"):
        out, inputs, done = study / "masks", [study, f"{study}/**/*.nii.gz"], ["p11", "p12", "q13"]
    else:
        out, inputs, done = study, [study], ["q13"]  # p11 and p12 are refused: their masks would replace them
    first = _run(segmenter, inputs, out, qc=True, probabilities=True, mesh="stl")
    second = _run(segmenter, inputs, out, qc=True, probabilities=True, mesh="stl")
    assert sorted(c for c, r in first.items() if r.status == "ok") == done, first
    assert sorted(second) == sorted(first) == ["p11", "p12", "q13"], sorted(second)
    assert all(second[c].status == "ok" and second[c].volume_ml > 0 for c in done), second


def test_every_output_name_is_the_case_name_plus_a_suffix(tmp_path: Path, segmenter) -> None:
    names = ["exam_T1_3.0mm", "exam_T1_3.5mm", "scan with spaces", "Übung_ßé.v2"]
    study = tmp_path / "study"
    for seed, name in enumerate(names, start=20):
        _nifti(study / f"{name}.nii.gz", seed)
    out = tmp_path / "out"
    results = _run(segmenter, [study], out, qc=True, probabilities=True, mesh="stl")
    assert sorted(results) == sorted(names)
    for name in names:
        assert results[name].status == "ok", results[name]
        assert results[name].output == str(out.absolute() / f"{name}.nii.gz")
        assert sorted(Path(p).name for p in results[name].extra_outputs) == [f"{name}.stl",
                                                                             f"{name}_probabilities.nii.gz"]
        assert Path(results[name].qc_png).name == f"{name}.png"
    written = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("report."))
    assert len(written) == 3 * len(names), written


def test_an_unusable_output_folder_is_refused_before_any_work(tmp_path: Path, segmenter) -> None:
    _nifti(tmp_path / "in" / "p1.nii.gz", 1)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for out, phrase in [(a_file, "exists and is not a folder"), (a_file / "masks", "cannot create the output folder")]:
        with pytest.raises(OutputFolderError, match=phrase):
            run_batch(segmenter, [tmp_path / "in"], BatchOptions(output=out, show_progress=False),
                      segment=lambda *a: pytest.fail("segmenting started"))
    assert check_output_folder(tmp_path / "new" / "masks").is_dir()


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


def _run_study(segmenter, study: Path, out: Path, segment=segment_case, **options) -> dict[str, CaseResult]:
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
    first = _run_study(segmenter, study, out, mesh="stl", probabilities=True)
    assert first["p42"].status == "failed" and "mesh device error" in first["p42"].reason
    assert (out / "p42.nii.gz").is_file() and not (out / "p42.stl").exists()
    assert (out / "p42_probabilities.nii.gz").is_file()  # written before the mesh failed: its record says so
    monkeypatch.setattr(mesh, "save_mesh", real_save)
    second = _run_study(segmenter, study, out, mesh="stl", probabilities=True)
    assert second["p42"].status == "ok" and second["p42"].volume_ml > 0, second["p42"]
    assert (out / "p42.stl").is_file() and all(is_complete(r) for r in collect(out))


def test_a_rerun_redoes_exactly_the_incomplete_cases(study: Path, tmp_path: Path, segmenter) -> None:
    out, segmented = tmp_path / "out", Counting()
    _run_study(segmenter, study, out, segmented, probabilities=True)
    assert segmented == ["p41", "p42", "p43"]
    (out / "p42_probabilities.nii.gz").unlink()  # an output the record lists is gone
    record_path(out, "p43").write_text('{"case": "p43", "stat')  # a record cut short
    segmented.clear()
    again = _run_study(segmenter, study, out, segmented, probabilities=True)
    assert segmented == ["p42", "p43"], "complete cases must not be redone, incomplete ones must be"
    assert all(again[c].status == "ok" and again[c].reason == "" for c in again), again
    assert (out / "p42_probabilities.nii.gz").is_file() and all(is_complete(r) for r in collect(out))
    segmented.clear()
    assert [r.status for r in _run_study(segmenter, study, out, segmented, probabilities=True).values()] == ["ok"] * 3
    assert segmented == []


def test_unreadable_and_temporary_records_never_break_a_report(study: Path, tmp_path: Path, segmenter) -> None:
    out = tmp_path / "out"
    _run_study(segmenter, study, out)
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
        results = _run_study(segmenter, study, out)
    finally:
        lock.release()
    assert results["p42"].status == "skipped"
    assert results["p42"].reason.endswith(f"being processed by PID {os.getpid()}"), results["p42"].reason
    assert not record_path(out, "p42").exists() and not (out / "p42.nii.gz").exists()
    assert results["p41"].status == results["p43"].status == "ok"
    assert _run_study(segmenter, study, out)["p42"].status == "ok"


@pytest.mark.parametrize(
    "file_name, fmt, case, suffix",
    [
        ("exam_T1_3.0mm.nii.gz", "nii.gz", "exam_T1_3.0mm", ".nii.gz"),
        ("exam_T1_3.5mm.nii", "same", "exam_T1_3.5mm", ".nii"),
        ("scan 2 (repeat).v1.nrrd", "same", "scan 2 (repeat).v1", ".nrrd"),
        ("Übung.ßé.mhd", "same", "Übung.ßé", ".mha"),
        ("Übung.ßé.MHD", "nii.gz", "Übung.ßé", ".nii.gz"),
    ],
)
def test_every_output_name_appends_to_the_case_name(
    tmp_path: Path, file_name: str, fmt: str, case: str, suffix: str
) -> None:
    assert case_name(tmp_path / file_name) == case
    outputs = case_outputs(InputCase(case, tmp_path / file_name), tmp_path, fmt, probabilities=True, mesh="stl",
                           qc=True)
    assert outputs.all() == [tmp_path / f"{case}{suffix}", tmp_path / f"{case}_probabilities{suffix}",
                             tmp_path / f"{case}.stl", tmp_path / "qc" / f"{case}.png"]


def test_two_inputs_of_one_case_name_fail_the_second_whatever_the_format(tmp_path: Path, segmenter) -> None:
    study = tmp_path / "study"
    _nifti(study / "a.nii.gz", 1)
    write_itk(study / "a.nrrd", _case(2).image, _case(2).affine)  # --format same: a.nii.gz and a.nrrd, one name
    outcome = run_batch(segmenter, [study], BatchOptions(output=tmp_path / "out", fmt="same", show_progress=False))
    by_input = {Path(r.input).name: r for r in outcome.results}
    assert by_input["a.nii.gz"].status == "ok"
    assert by_input["a.nrrd"].status == "failed" and "case name a is also that of" in by_input["a.nrrd"].reason


def test_a_case_done_from_another_input_is_not_taken_for_this_one(tmp_path: Path, segmenter) -> None:
    site1, site2, out = tmp_path / "site1", tmp_path / "site2", tmp_path / "out"
    _nifti(site1 / "p01.nii.gz", 1)
    _nifti(site2 / "p01.nii.gz", 2)
    assert _run(segmenter, [site1], out, qc=True)["p01"].status == "ok"
    (out / "qc" / "p01.png").unlink()  # site1's case is no longer complete, but still site1's
    other = _run(segmenter, [site2], out, qc=True)["p01"]
    assert other.status == "skipped" and other.input == str(site2 / "p01.nii.gz")
    assert f"segmented from {site1 / 'p01.nii.gz'}" in other.reason and "--overwrite" in other.reason
    assert _run(segmenter, [site1], out, qc=True)["p01"].status == "ok"  # its own input: finished


def test_a_case_refused_by_a_later_run_keeps_the_record_of_the_earlier_one(tmp_path: Path, segmenter) -> None:
    source, out = _nifti(tmp_path / "in" / "p01.nii.gz", 1), tmp_path / "out"
    assert _run(segmenter, [source], out)["p01"].status == "ok"
    refused = _run(segmenter, [source], out, fmt="dicom-seg")["p01"]  # a DICOM SEG needs a DICOM series
    assert refused.status == "failed" and "DICOM" in refused.reason
    assert report.read_record(out, "p01").status == "ok"  # the finished case's record is not replaced
    again = _run(segmenter, [source], out)["p01"]
    assert again.status == "ok" and again.reason == ""  # done earlier: not 'exists and no earlier run wrote it'
    assert [(r.case, r.status) for r in collect(out)] == [("p01", "ok")]  # no failed row left behind


def test_strays_of_one_name_in_two_folders_are_both_listed(tmp_path: Path, segmenter) -> None:
    study, out = tmp_path / "study", tmp_path / "out"
    _nifti(study / "p01.nii.gz", 1)
    for folder in ("a", "b"):
        (study / folder).mkdir()
        (study / folder / "notes.txt").write_text("scanned on the 3T")
    run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False))
    rows = [r for r in json.loads((out / "report.json").read_text())["cases"] if r["case"] == "notes.txt"]
    assert sorted(r["input"] for r in rows) == [str(study / "a" / "notes.txt"), str(study / "b" / "notes.txt")]
