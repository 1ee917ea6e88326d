"""Where a batch writes: never over an input, never reading its own outputs back, one name per case, and a
clean end when the output folder cannot be written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers import write_dicom_series, write_itk, write_nifti

from atriumseg.pipeline.batch import report
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.report import RECORDS, collect
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.io import writing
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


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputFolderError, match="cannot write into the output folder"):
            check_output_folder(folder)
    finally:
        folder.chmod(0o755)


def test_a_full_disk_ends_the_run_with_the_records_it_could_write_and_no_half_file(
    tmp_path: Path, segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = tmp_path / "in"
    for seed in (31, 32, 33, 34):
        _nifti(study / f"p{seed}.nii.gz", seed)
    out, full = tmp_path / "out", []
    real_save, real_write = writing.save_nifti, report.write_atomically

    def save_until_full(image, path, gzip):
        if "p32" in Path(path).name:
            full.append(True)
        if full:
            Path(path).write_bytes(b"half a ma")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(image, path, gzip)

    def write_unless_full(path, write):
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, write)

    monkeypatch.setattr(writing, "save_nifti", save_until_full)
    monkeypatch.setattr(report, "write_atomically", write_unless_full)
    outcome = run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False, workers=1))
    assert "No space left on device" in outcome.output_error and not outcome.interrupted
    results = {r.case: r.status for r in outcome.results}
    assert results["p31"] == "ok" and results["p32"] == "failed", results
    assert all(results.get(c, "failed") == "failed" for c in ("p33", "p34")), results  # not started, or failed
    assert [r.case for r in collect(out) if r.status == "ok"] == ["p31"]
    assert not list(out.rglob(".tmp-*")) and not (out / "p32.nii.gz").exists()

    monkeypatch.undo()  # space freed: the rerun finishes the rest, p31 stays done
    again = run_batch(segmenter, [study], BatchOptions(output=out, show_progress=False))
    assert again.output_error == "" and [r.status for r in again.results] == ["ok"] * 4
    assert sorted(p.name for p in (out / RECORDS).iterdir()) == [f"p{s}.json" for s in (31, 32, 33, 34)]
