"""``atriumseg segment``: masks written, bad input refused one clear line each, never half a file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from helpers import write_itk, write_nifti

from atriumseg.cli import EXIT_CASE_FAILED, EXIT_OK, EXIT_USAGE, main
from atriumseg.models import checkpoint
from atriumseg.pipeline.io import writing
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (40, 42, 30)


@pytest.fixture()
def good_case(tmp_path: Path) -> Path:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "LPS", (0, 10, 0)), seed=7)
    (tmp_path / "inputs").mkdir()
    return write_nifti(tmp_path / "inputs" / "good.nii.gz", case.image, case.affine)


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input with a phrase its error line must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    flat = write_nifti(folder / "flat2d.nii.gz", np.ones((30, 30), np.float32), np.eye(4))
    notes = folder / "notes.txt"
    notes.write_text("not an image")
    case = synthetic_case(SHAPE, make_affine(SHAPE), seed=8)
    whole = write_nifti(folder / "whole.nii.gz", case.image, case.affine).read_bytes()
    truncated = folder / "truncated.nii.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    return {
        "missing": (folder / "missing.nii.gz", "no such file"),
        "2D": (flat, "2D image"),
        "non-image": (notes, "not a supported image"),
        "truncated": (truncated, "unreadable or corrupt"),
    }


def test_segment_writes_mask_and_report_and_exits_zero(tmp_path: Path, good_case: Path, model_folder: Path) -> None:
    out = tmp_path / "out"
    code = main(["segment", str(good_case), "--output", str(out), "--model", str(model_folder), "--quiet"])
    assert code == EXIT_OK
    mask = nib.load(out / "good.nii.gz")
    assert mask.shape == SHAPE and np.allclose(mask.affine, nib.load(good_case).affine)
    voxels = int(np.asanyarray(mask.dataobj).sum())
    assert voxels > 0
    (row,) = json.loads((out / "report.json").read_text())["cases"]
    assert row["case"] == "good" and row["status"] == "ok" and row["voxels"] == voxels


def test_options_reach_the_run(tmp_path: Path, good_case: Path, model_folder: Path) -> None:
    out = tmp_path / "out"
    code = main(["segment", str(good_case), "-o", str(out), "--model", str(model_folder), "--quiet",
                 "--qc", "--probabilities", "--mesh", "obj", "--mesh-frame", "LPS"])
    assert code == EXIT_OK
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if ".atriumseg" not in p.parts)
    assert names == ["good.nii.gz", "good.obj", "good_probabilities.nii.gz", "qc", "qc/good.png", "qc/index.html",
                     "report.csv", "report.json"]
    vertices = np.array([[float(v) for v in line.split()[1:]] for line in (out / "good.obj").read_text().splitlines()
                         if line.startswith("v ")])
    ras = nib.load(out / "good.nii.gz")
    voxels = np.argwhere(np.asanyarray(ras.dataobj) > 0)
    centre_ras = nib.affines.apply_affine(ras.affine, voxels).mean(axis=0)
    assert np.allclose(vertices.mean(axis=0), centre_ras * [-1, -1, 1], atol=2.0), (vertices.mean(axis=0), centre_ras)


def test_a_list_file_adds_inputs(tmp_path: Path, good_case: Path, model_folder: Path) -> None:
    listing = tmp_path / "cases.csv"
    listing.write_text(f'path,note\n"{good_case}",first\n')
    code = main(["segment", "--list", str(listing), "-o", str(tmp_path / "out"), "--model", str(model_folder),
                 "--quiet"])
    assert code == EXIT_OK and (tmp_path / "out" / "good.nii.gz").is_file()


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [(["--list", "nowhere.txt"], "cannot read --list"), ([], "nothing to segment"),
     (["--patients", "nowhere.csv"], "cannot read --patients")],
)
def test_what_cannot_be_started_is_a_usage_error(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture, extra: list[str], phrase: str
) -> None:
    inputs = [str(tmp_path)] if "--patients" in extra else []
    with caplog.at_level(logging.ERROR):
        code = main(["segment", *inputs, *extra, "-o", str(tmp_path / "out"), "--model", str(model_folder)])
    assert code == EXIT_USAGE and phrase in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["missing", "2D", "non-image", "truncated"])
def test_bad_input_gives_one_clear_line_nonzero_exit_and_no_output(
    tmp_path: Path, model_folder: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    path, phrase = _bad_inputs(tmp_path / "inputs")[kind]
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(path), "--output", str(out), "--model", str(model_folder), "--quiet"])
    assert code == EXIT_CASE_FAILED
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert str(path) in errors[0] and phrase in errors[0], errors[0]
    assert "\n" not in errors[0]
    assert not list(out.glob("*.nii*")) and not list(out.rglob(".tmp-*"))


def test_verbose_adds_the_traceback_to_a_failed_cases_line(tmp_path: Path, model_folder: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    path, _ = _bad_inputs(tmp_path / "inputs")["truncated"]
    for run, verbose in enumerate(([], ["-v"], [])):  # -v for its own run only
        caplog.clear()
        with caplog.at_level(logging.INFO):
            main([*verbose, "segment", str(path), "-o", str(tmp_path / f"out{run}"), "--model", str(model_folder),
                  "--quiet"])
        (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert "\n" not in error.getMessage() and (error.exc_info is not None) == bool(verbose), verbose
        assert ("Traceback" in caplog.text) == bool(verbose)
    assert logging.getLogger("atriumseg").level == logging.NOTSET  # as before the first main()


def test_one_bad_case_does_not_stop_the_others(tmp_path: Path, good_case: Path, model_folder: Path) -> None:
    bad = _bad_inputs(tmp_path / "bad")
    inputs = [str(p) for p, _ in bad.values()] + [str(good_case)]
    code = main(["segment", *inputs, "--output", str(tmp_path / "out"), "--model", str(model_folder), "--quiet"])
    assert code == EXIT_CASE_FAILED
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii*")) == ["good.nii.gz"]


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, good_case: Path, model_folder: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "good.nii.gz"
    target.write_bytes(b"keep me")
    args = ["segment", str(good_case), "--output", str(out), "--model", str(model_folder), "--quiet"]
    assert main(args) == EXIT_OK
    assert target.read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == EXIT_OK
    assert nib.load(target).shape == SHAPE


def test_format_same_keeps_the_input_format(tmp_path: Path, model_folder: Path) -> None:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS", (10, 0, 0)), seed=9)
    (tmp_path / "in").mkdir()
    src = write_itk(tmp_path / "in" / "scan.mhd", case.image, case.affine)
    args = ["segment", str(src), "--output", str(tmp_path / "out"), "--model", str(model_folder), "--quiet"]
    assert main([*args, "--format", "same"]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "out").glob("scan*")) == ["scan.mha"]
    assert sitk.ReadImage(str(tmp_path / "out" / "scan.mha")).GetSize() == SHAPE


def test_a_failed_write_leaves_no_partial_file(
    tmp_path: Path, good_case: Path, model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save(image, path, gzip):
        Path(path).write_bytes(b"half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(writing, "save_nifti", broken_save)
    out = tmp_path / "out"
    code = main(["segment", str(good_case), "--output", str(out), "--model", str(model_folder), "--quiet"])
    assert code == EXIT_CASE_FAILED
    assert not list(out.glob("*.nii*")) and not list(out.rglob(".tmp-*"))


def test_no_default_model_is_said_clearly(
    tmp_path: Path, good_case: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(checkpoint, "default_model_path", lambda: tmp_path / "no-model-here")
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(good_case), "--output", str(tmp_path / "out"), "--quiet"])
    assert code == EXIT_USAGE
    assert "no default model is installed" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        (["--batch-size", "0"], "--batch-size: must be at least 1"),
        (["--batch-size", "-3"], "--batch-size: must be at least 1"),
        (["--batch-size", "many"], "--batch-size: expected a whole number"),
        (["--assume-orientation", "RAR"], "not three axis codes"),
        (["--workers", "0"], "--workers: must be at least 1"),
        (["--shard", "4/4"], "--shard I/N needs 0 <= I < N"),
        (["--format", "png"], "--format: invalid choice: 'png'"),
    ],
)
def test_bad_options_are_one_line_usage_errors(
    tmp_path: Path, good_case: Path, capsys: pytest.CaptureFixture, options, phrase
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(good_case), "-o", str(tmp_path / "out"), *options])
    err = capsys.readouterr().err
    assert stop.value.code == EXIT_USAGE
    assert phrase in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device", ["gpu", "cuda:7", "tpu"])
def test_a_device_that_does_not_exist_is_refused_before_any_work(
    tmp_path: Path, good_case: Path, model_folder: Path, caplog: pytest.LogCaptureFixture, device: str
) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(good_case), "-o", str(tmp_path / "out"), "--model", str(model_folder),
                     "--device", device, "--quiet"])
    assert code == EXIT_USAGE and device in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [("width", 10**7, "architecture.width must be an integer"), ("depth", "4", "architecture.depth must be"),
     ("in_channels", 2.5, "architecture.in_channels must be")],
)
def test_an_absurd_model_card_is_refused_before_building_a_network(
    tmp_path: Path, good_case: Path, model_folder: Path, caplog: pytest.LogCaptureFixture, field, value, phrase
) -> None:
    bad = tmp_path / "bad-model"
    shutil.copytree(model_folder, bad)
    card = json.loads((bad / "card.json").read_text())
    card["architecture"][field] = value
    (bad / "card.json").write_text(json.dumps(card))
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(good_case), "-o", str(tmp_path / "out"), "--model", str(bad), "--quiet"])
    assert code == EXIT_USAGE and phrase in caplog.text


def test_an_output_path_that_is_a_file_is_a_usage_error(
    tmp_path: Path, good_case: Path, model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "out"
    target.write_text("a file, not a folder")
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(good_case), "-o", str(target), "--model", str(model_folder), "--quiet"])
    assert code == EXIT_USAGE and str(target) in caplog.text
    assert target.read_text() == "a file, not a folder"
