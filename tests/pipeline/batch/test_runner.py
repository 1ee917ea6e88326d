"""Clinical batch runs: a folder mixing good, odd and bad inputs; resumable, interruptible, shardable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from helpers import write_dicom_series, write_itk, write_nifti

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_INTERRUPTED, EXIT_OK, main
from atriumseg.pipeline.batch import runner
from atriumseg.pipeline.batch.inputs import discover, in_shard
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.report import collect
from atriumseg.pipeline.batch.segment import segment_case
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (40, 42, 30)


def _case(seed: int, shape=SHAPE, codes="RAS", rotation=(0, 0, 0), spacing=(1.5, 1.5, 1.5)):
    return synthetic_case(shape, make_affine(shape, spacing, codes, rotation), seed=seed)


def _good_inputs(folder: Path) -> dict[str, Path]:
    """Valid inputs, some odd: formats, dtypes, headers, sizes."""
    c = _case(1, codes="LPS", rotation=(0, 10, 0))
    nan_case = _case(2)
    nan_image = nan_case.image.copy()
    nan_image[::7, ::5, ::3] = np.nan
    no_header = nib.Nifti1Image(_case(3).image, np.eye(4))
    no_header.header.set_qform(None, 0)
    no_header.header.set_sform(None, 0)
    (folder / "dicom_study").mkdir(parents=True)
    dcm = _case(9, codes="LPS")
    nib.save(no_header, folder / "no_qform_sform.nii.gz")
    return {
        "lps": write_nifti(folder / "lps.nii.gz", c.image, c.affine),
        "nan_voxels": write_nifti(folder / "nan_voxels.nii.gz", nan_image, nan_case.affine),
        "float64": write_nifti(folder / "float64.nii", _case(4).image.astype(np.float64), _case(4).affine),
        "uint8": write_nifti(folder / "uint8.nii.gz", (_case(5).image / 10).clip(0, 255).astype(np.uint8),
                             _case(5).affine),
        "int16": write_itk(folder / "int16.nrrd", _case(6).image.astype(np.int16), _case(6).affine),
        "odd_size": write_itk(folder / "odd_size.mha", _case(7, (37, 53, 29)).image, _case(7, (37, 53, 29)).affine),
        "few_slices": write_nifti(folder / "few_slices.nii.gz", _case(8, (41, 43, 3)).image,
                                  _case(8, (41, 43, 3)).affine),
        "constant": write_nifti(folder / "constant.nii.gz", np.full(SHAPE, 300, np.float32), np.eye(4)),
        "no_qform_sform": folder / "no_qform_sform.nii.gz",
        "dicom_study": write_dicom_series(folder / "dicom_study", dcm.image / dcm.image.max() * 2000, dcm.affine),
    }


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Broken inputs with the phrase their reason must contain."""
    good = write_nifti(folder / "tmp_good.nii.gz", _case(10).image, _case(10).affine).read_bytes()
    (folder / "tmp_good.nii.gz").unlink()
    (folder / "truncated.nii.gz").write_bytes(good[: len(good) // 3])
    (folder / "garbage.nii.gz").write_bytes(os.urandom(5000))
    (folder / "empty.nii.gz").write_bytes(b"")
    (folder / "cut_header.nii").write_bytes((348).to_bytes(4, "little") + bytes(100))  # cut inside its header
    four_d = np.stack([_case(11).image] * 3, axis=-1)
    gappy = _case(12, codes="LPS")
    series = write_dicom_series(folder / "gappy_series", gappy.image / gappy.image.max() * 2000, gappy.affine)
    for k in (10, 11):
        (series / f"slice_{k:03d}.dcm").unlink()
    return {
        "truncated": (folder / "truncated.nii.gz", "unreadable or corrupt"),
        "garbage": (folder / "garbage.nii.gz", "unreadable or corrupt"),
        "empty": (folder / "empty.nii.gz", "empty file"),
        "cut_header": (folder / "cut_header.nii", "unreadable or corrupt"),
        "flat2d": (write_nifti(folder / "flat2d.nii.gz", np.ones((30, 30), np.float32), np.eye(4)), "2D image"),
        "four_d": (write_nifti(folder / "four_d.nii.gz", four_d, _case(11).affine), "3 volumes"),
        "all_nan": (write_nifti(folder / "all_nan.nii.gz", np.full(SHAPE, np.nan, np.float32), np.eye(4)), "no finite"),
        "tiny": (write_nifti(folder / "tiny.nii.gz", np.ones((8, 8, 8), np.float32), np.eye(4)), "too small"),
        "gappy_series": (series, "missing or inconsistent slices"),
    }


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def study(tmp_path: Path) -> tuple[Path, dict[str, Path], dict[str, tuple[Path, str]]]:
    folder = tmp_path / "study"
    folder.mkdir()
    good, bad = _good_inputs(folder), _bad_inputs(folder)
    (folder / "notes.txt").write_text("scanned on the 3T")
    (folder / "thumb.png").write_bytes(b"\x89PNG not really")
    return folder, good, bad


def _geometry_matches(src: Path, out: Path) -> None:
    if str(src).endswith((".nii", ".nii.gz")):
        a, b = nib.load(src), nib.load(out)
        assert a.shape == b.shape, src
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
        return
    if src.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(src)))
        a = reader.Execute()
    else:
        a = sitk.ReadImage(str(src))
    b = sitk.ReadImage(str(out))
    assert a.GetSize() == b.GetSize(), src
    for get in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(a, get)(), getattr(b, get)(), atol=1e-4, err_msg=f"{src} {get}")


def test_mixed_folder_every_case_reported_and_rerun_changes_nothing(study, tmp_path: Path, model_folder: Path) -> None:
    folder, good, bad = study
    inputs_before = _snapshot(folder)
    out = tmp_path / "out"
    args = ["segment", str(folder), "--output", str(out), "--model", str(model_folder), "--quiet", "--qc"]
    assert main(args) == EXIT_CASE_FAILED
    report = {r["case"]: r for r in json.loads((out / "report.json").read_text())["cases"]}
    for name, src in good.items():
        assert report[name]["status"] == "ok", report[name]
        _geometry_matches(src, Path(report[name]["output"]))
        assert Path(report[name]["qc_png"]).is_file()
    for name, (src, phrase) in bad.items():
        assert report[name]["status"] == "failed", report[name]
        assert phrase in report[name]["reason"] and str(src) in report[name]["reason"], report[name]
    assert report["notes.txt"]["status"] == report["thumb.png"]["status"] == "skipped"
    assert report["lps"]["voxels"] > 0 and report["lps"]["volume_ml"] > 0
    assert (out / "report.csv").read_text().count("\n") == len(good) + len(bad) + 2 + 1
    assert "lps" in (out / "qc" / "index.html").read_text()
    assert not list(out.rglob(".tmp-*"))
    assert _snapshot(folder) == inputs_before, "inputs were modified"

    outputs_before = {k: v for k, v in _snapshot(out).items()
                      if "/.atriumseg/" not in k and "report" not in k and "index.html" not in k}
    assert main(args) == EXIT_CASE_FAILED
    outputs_after = {k: v for k, v in _snapshot(out).items() if k in outputs_before}
    assert outputs_after == outputs_before
    rerun = {r["case"]: r for r in json.loads((out / "report.json").read_text())["cases"]}
    assert all(rerun[name]["status"] == "ok" for name in good)


def test_all_good_gives_exit_zero_and_report(tmp_path: Path, model_folder: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in (21, 22):
        write_nifti(folder / f"p{seed}.nii.gz", _case(seed).image, _case(seed).affine)
    listing = tmp_path / "cases.csv"
    listing.write_text("path,comment\nin/p21.nii.gz,first\nin/p22.nii.gz,second\n")
    out = tmp_path / "out"
    args = ["segment", "--list", str(listing), "--output", str(out), "--model", str(model_folder), "--quiet"]
    assert main(args) == EXIT_OK
    assert sorted(r.case for r in collect(out)) == ["p21", "p22"]


def test_interrupt_stops_between_cases_and_a_rerun_completes(
    tmp_path: Path, model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(30, 36):
        write_nifti(folder / f"p{seed}.nii.gz", _case(seed).image, _case(seed).affine)
    calls, real_run_batch = [], runner.run_batch

    def segment_then_signal(*args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return segment_case(*args)

    monkeypatch.setattr(runner, "run_batch", lambda *args: real_run_batch(*args, segment=segment_then_signal))
    out = tmp_path / "out"
    args = ["segment", str(folder), "--output", str(out), "--model", str(model_folder), "--quiet"]
    assert main(args) == EXIT_INTERRUPTED
    done = sorted(p.name for p in out.glob("*.nii.gz"))
    assert done == ["p30.nii.gz", "p31.nii.gz"]
    assert not list(out.rglob(".tmp-*"))
    for path in out.glob("*.nii.gz"):
        assert nib.load(path).get_fdata().sum() > 0
    monkeypatch.setattr(runner, "run_batch", real_run_batch)
    assert main(args) == EXIT_OK
    assert len(list(out.glob("*.nii.gz"))) == 6
    assert [r.status for r in collect(out)] == ["ok"] * 6


def test_second_signal_interrupts_at_once_and_leaves_no_partial_file(
    tmp_path: Path, segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(40, 43):
        write_nifti(folder / f"p{seed}.nii.gz", _case(seed).image, _case(seed).affine)

    def two_signals_at_the_second_case(segmenter, planned, volume, options):
        if planned.case.name != "p40":
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return segment_case(segmenter, planned, volume, options)

    with pytest.raises(KeyboardInterrupt):
        runner.run_batch(segmenter, [folder], BatchOptions(output=tmp_path / "out", show_progress=False, workers=1),
                         segment=two_signals_at_the_second_case)
    out = tmp_path / "out"
    assert [p.name for p in out.glob("*.nii.gz")] == ["p40.nii.gz"]  # the case before, written whole; none after
    assert nib.load(out / "p40.nii.gz").get_fdata().sum() > 0 and not list(out.rglob(".tmp-*"))


def test_shards_cover_every_case_exactly_once(tmp_path: Path, model_folder: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(40, 47):  # names whose hashes give every shard two or three cases
        write_nifti(folder / f"p{seed}.nii.gz", _case(seed, (32, 34, 20)).image, _case(seed, (32, 34, 20)).affine)
    cases, _ = discover([folder])
    shares = [[c.name for c in cases if in_shard(c, i, 3)] for i in range(3)]
    assert sorted(sum(shares, [])) == sorted(c.name for c in cases) and all(len(share) >= 2 for share in shares)
    out = tmp_path / "out"
    for i in range(3):
        args = ["segment", str(folder), "--output", str(out), "--model", str(model_folder), "--quiet",
                "--shard", f"{i}/3"]
        assert main(args) == EXIT_OK
        done = sorted(p.name.removesuffix(".nii.gz") for p in out.glob("*.nii.gz"))
        assert done == sorted(sum(shares[: i + 1], []))  # each run segments its own share, no other case
    assert main(["report", str(out)]) == EXIT_OK
    report = json.loads((out / "report.json").read_text())
    assert sorted(r["case"] for r in report["cases"]) == sorted(c.name for c in cases)
    assert report["totals"]["ok"] == len(cases) == 7


def _patched_nifti(path: Path, array: np.ndarray, affine: np.ndarray, patches: list[tuple[int, str, tuple]]) -> Path:
    """A NIfTI-1 file whose header bytes are overwritten at (offset, struct format, values)."""
    data = bytearray(nib.Nifti1Image(array, affine).to_bytes())
    for offset, fmt, values in patches:
        struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))
    return path


def test_corrupt_headers_and_implausible_sizes_fail_their_own_case_only(tmp_path: Path, segmenter) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = _case(95)
    write_nifti(folder / "good.nii.gz", good.image, good.affine)
    image, affine = good.image.astype(np.float32), good.affine
    sform_on, metres = (254, "<h", (1,)), np.diag([1e3, 1e3, 1e3, 1])
    bad = {
        "nan_sform": (_patched_nifti(folder / "nan_sform.nii", image, affine, [sform_on, (280, "<f", (np.nan,))]),
                      "the sform (srow_x/y/z) holds a value that is not a finite number"),
        "bad_datatype": (_patched_nifti(folder / "bad_datatype.nii", image, affine, [(70, "<h", (999,))]),
                         "unknown datatype code 999"),
        "zero_voxel": (_patched_nifti(folder / "zero_voxel.nii", image, affine, [(84, "<f", (0.0,))]),
                       "voxel size 1.5 x 0 x 1.5 mm is not usable"),
        "in_metres": (write_nifti(folder / "in_metres.nii.gz", np.ones((24, 24, 20), np.float32), metres),
                      "would hold 24 x 16000 x 13333 = 5,119,872,000 voxels (from 24 x 24 x 20 voxels of 1000 x 1000 x "
                      "1000 mm), beyond the bound of 268,435,456"),
    }
    outcome = runner.run_batch(segmenter, [folder], BatchOptions(output=tmp_path / "out", show_progress=False))
    results = {r.case: r for r in outcome.results}
    assert results["good"].status == "ok" and results["good"].voxels > 0
    for name, (path, phrase) in bad.items():
        assert results[name].status == "failed", results[name]
        assert results[name].reason.startswith(str(path)) and phrase in results[name].reason, results[name].reason


@pytest.mark.slow
def test_a_nifti_run_never_loads_the_dicom_seg_writer(tmp_path: Path, model_folder: Path) -> None:
    source = write_nifti(tmp_path / "p1.nii.gz", _case(1).image, _case(1).affine)
    code = (
        "import sys\nfrom atriumseg.cli import main\n"
        f"assert main(['segment', {str(source)!r}, '-o', {str(tmp_path / 'out')!r}, '--model', {str(model_folder)!r},"
        " '--quiet']) == 0\nprint('highdicom' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_file_name_that_is_not_utf8_is_segmented_and_reported(tmp_path: Path, model_folder: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    latin1 = os.fsdecode(b"p\xe9rez.nii.gz")  # a name from a Latin-1 share: not valid UTF-8
    write_nifti(folder / latin1, _case(23).image, _case(23).affine)
    write_nifti(folder / "plain.nii.gz", _case(24).image, _case(24).affine)
    args = ["segment", str(folder), "--output", str(out), "--model", str(model_folder), "--quiet", "--shard", "0/2"]
    assert main(args) == EXIT_OK
    assert main([*args[:-1], "1/2"]) == EXIT_OK
    assert sorted(os.fsencode(r.case) for r in collect(out)) == [b"plain", b"p\xe9rez"]
    assert (out / os.fsdecode(b"p\xe9rez.nii.gz")).is_file() and (out / "report.csv").is_file()


def test_a_rerun_from_another_folder_knows_the_cases_it_finished(
    tmp_path: Path, segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project" / "scans").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    write_nifti(tmp_path / "project" / "scans" / "p25.nii.gz", _case(25).image, _case(25).affine)
    options = BatchOptions(output=tmp_path / "out", show_progress=False)
    monkeypatch.chdir(tmp_path / "project")
    (first,) = runner.run_batch(segmenter, ["scans"], options).results
    monkeypatch.chdir(tmp_path / "elsewhere")
    (again,) = runner.run_batch(segmenter, [tmp_path / "project" / "scans"], options).results
    assert first.status == again.status == "ok" and again.reason == ""  # done earlier, not 'already holds case'
    assert first.input == again.input == str(tmp_path / "project" / "scans" / "p25.nii.gz")


def test_a_copied_output_folder_judges_its_cases_by_its_own_files(tmp_path: Path, segmenter) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "p26.nii.gz", _case(26).image, _case(26).affine)
    first = tmp_path / "out"
    runner.run_batch(segmenter, [folder], BatchOptions(output=first, show_progress=False, qc=True))
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    (copy / "p26.nii.gz").unlink()  # the copy lost its mask; the original still has one
    (again,) = runner.run_batch(segmenter, [folder], BatchOptions(output=copy, show_progress=False, qc=True)).results
    assert again.status == "ok" and (copy / "p26.nii.gz").is_file()  # redone, not 'complete' by the original's file
    assert again.output == str(copy / "p26.nii.gz") and again.qc_png == str(copy / "qc" / "p26.png")
    assert {r.output for r in collect(copy)} == {str(copy / "p26.nii.gz")}
