"""``process_input``: one input written exactly as ``atriumseg segment`` writes it, from the same code."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_nifti, write_series

from atriumseg.pipeline.batch.case import process_input
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.report import RECORDS, collect
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.batch.segment import segment_case
from atriumseg.pipeline.io.writing import OutputFolderError
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (36, 38, 24)
SAGITTAL = ((0, 1, 0), (0, 0, -1))


def _files(out: Path) -> dict[str, object]:
    """Every file of an output folder by relative path: voxels for images, records without timings, else bytes."""
    found: dict[str, object] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and "locks" not in p.parts):
        name = path.relative_to(out).as_posix()
        if name.endswith(".nii.gz"):
            found[name] = np.asanyarray(nib.load(path).dataobj).tolist()
        elif name.endswith(".json"):
            data = json.loads(path.read_text())
            for row in data.get("cases", [data]):
                row.update(seconds=None, input=Path(row["input"]).name,
                           output=Path(row["output"]).name if row["output"] else "")
                row["extra_outputs"] = [Path(p).name for p in row["extra_outputs"]]
                row["qc_png"] = Path(row["qc_png"]).name if row["qc_png"] else ""
            data.get("totals", {}).pop("seconds", None)
            found[name] = data
        elif name.endswith((".csv", ".html", ".png")):
            found[name] = "present"
        else:
            found[name] = path.read_bytes()
    return found


def test_one_file_gives_the_same_outputs_as_a_batch_of_it(tmp_path: Path, segmenter) -> None:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "LPS", (5, 0, 0)), seed=3)
    (tmp_path / "in").mkdir()
    source = write_nifti(tmp_path / "in" / "p.3.nii.gz", case.image, case.affine)
    options = dict(show_progress=False, probabilities=True, mesh="stl", qc=True)
    single = process_input(source, segmenter, BatchOptions(output=tmp_path / "one", **options))
    batch = run_batch(segmenter, [source], BatchOptions(output=tmp_path / "all", **options))
    assert [r.status for r in single.results] == ["ok"] and single.results[0].case == "p.3"
    assert single.results[0].volume_ml == batch.results[0].volume_ml > 0
    assert not single.interrupted and single.output_error == ""
    assert _files(tmp_path / "one") == _files(tmp_path / "all")
    assert {"p.3.nii.gz", "p.3.stl", "p.3_probabilities.nii.gz", "qc/p.3.png", "report.csv",
            f"{RECORDS.as_posix()}/p.3.json"} <= set(_files(tmp_path / "one"))


def test_each_series_of_a_dicom_folder_is_a_case_with_its_seg(tmp_path: Path, segmenter) -> None:
    folder = write_series(tmp_path / "study", *SAGITTAL)
    outcome = process_input(folder, segmenter, BatchOptions(output=tmp_path / "out", fmt="dicom-seg",
                                                            show_progress=False))
    assert [(r.case, r.status) for r in outcome.results] == [("study", "ok")]
    assert (tmp_path / "out" / "study.seg.dcm").is_file()
    assert [r.case for r in collect(tmp_path / "out")] == ["study"]


def test_a_complete_case_is_not_redone_and_a_failed_one_says_why(tmp_path: Path, segmenter) -> None:
    case = synthetic_case(SHAPE, make_affine(SHAPE), seed=4)
    (tmp_path / "in").mkdir()
    source = write_nifti(tmp_path / "in" / "p4.nii.gz", case.image, case.affine)
    options = BatchOptions(output=tmp_path / "out", show_progress=False)
    process_input(source, segmenter, options)
    again = process_input(source, segmenter, options, segment=lambda *a: pytest.fail("a complete case was redone"))
    assert [r.status for r in again.results] == ["ok"]
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    (result,) = process_input(broken, segmenter, options).results
    assert result.status == "failed" and str(broken) in result.reason
    assert sorted(r.case for r in collect(tmp_path / "out")) == ["broken", "p4"]


def test_the_per_case_step_can_be_wrapped(tmp_path: Path, segmenter) -> None:
    seen = []

    def observed(segmenter, planned, volume, options):
        seen.append((planned.case.name, volume.tensor.shape[1:]))
        return segment_case(segmenter, planned, volume, options)

    case = synthetic_case(SHAPE, make_affine(SHAPE), seed=5)
    (tmp_path / "in").mkdir()
    source = write_nifti(tmp_path / "in" / "p5.nii.gz", case.image, case.affine)
    process_input(source, segmenter, BatchOptions(output=tmp_path / "out", show_progress=False), segment=observed)
    assert seen == [("p5", SHAPE)]


def test_an_unexpected_error_fails_its_case_only_and_releases_it(tmp_path: Path, segmenter) -> None:
    (tmp_path / "in").mkdir()
    for seed in (6, 7):
        case = synthetic_case(SHAPE, make_affine(SHAPE), seed=seed)
        write_nifti(tmp_path / "in" / f"p{seed}.nii.gz", case.image, case.affine)

    def broken_for_p6(segmenter, planned, volume, options):
        if planned.case.name == "p6":
            raise KeyError("a bug met by one case")
        return segment_case(segmenter, planned, volume, options)

    options = BatchOptions(output=tmp_path / "out", show_progress=False)
    batch = run_batch(segmenter, [tmp_path / "in"], options, segment=broken_for_p6)
    assert {r.case: r.status for r in batch.results} == {"p6": "failed", "p7": "ok"}
    assert "KeyError: 'a bug met by one case'" in next(r.reason for r in batch.results if r.case == "p6")
    (single,) = process_input(tmp_path / "in" / "p6.nii.gz", segmenter, options, segment=broken_for_p6).results
    assert single.status == "failed" and "KeyError" in single.reason
    (again,) = process_input(tmp_path / "in" / "p6.nii.gz", segmenter, options).results  # not left locked
    assert again.status == "ok"


def test_an_unusable_output_folder_raises_before_any_work(tmp_path: Path, segmenter) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    with pytest.raises(OutputFolderError):
        process_input(tmp_path, segmenter, BatchOptions(output=a_file), segment=lambda *a: pytest.fail("started"))
