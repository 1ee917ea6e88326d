"""Evaluation segments each image as users do and scores the mask against its label, volume error included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_nifti

from atriumseg.pipeline.analysis.metrics import case_metrics
from atriumseg.pipeline.evaluation.evaluate import evaluate
from atriumseg.pipeline.evaluation.pairs import pair_cases
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import ImageReadError, read_image
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (44, 40, 36)


def _dataset(root: Path, seeds: dict[str, int]) -> tuple[Path, Path]:
    (root / "img").mkdir()
    (root / "lab").mkdir()
    for name, seed in seeds.items():
        case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 10, 0)), seed=seed)
        write_nifti(root / "img" / f"{name}.nii.gz", case.image, case.affine)
        write_nifti(root / "lab" / f"{name}.nii.gz", case.label, case.affine)
    return root / "img", root / "lab"


@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_scores_the_mask_users_get(tmp_path: Path, segmenter: Segmenter, tta: bool) -> None:
    pairs = pair_cases(*_dataset(tmp_path, {"p1": 41, "p2": 42}))
    rows = evaluate(segmenter, pairs, show_progress=False, tta=tta)
    assert [name for name, _ in rows] == ["p1", "p2"]
    for (name, image_path, label_path), (_, metrics) in zip(pairs, rows, strict=True):
        image = read_image(image_path).tensor
        mask = segmenter(image, tta=tta)[0].numpy()
        assert (mask != segmenter(image, tta=not tta)[0].numpy()).any(), "so the test tells whether tta was used"
        expected = case_metrics(mask, read_image(label_path).tensor[0].numpy() > 0.5, image.affine.numpy())
        assert metrics == expected, name
        assert metrics.dice > 0.8, f"{name}: Dice {metrics.dice:.3f}"
        assert metrics.volume_error_pct == pytest.approx(100 * (metrics.predicted_ml / metrics.true_ml - 1))


def test_a_label_on_another_grid_is_refused(tmp_path: Path, segmenter: Segmenter) -> None:
    images, labels = _dataset(tmp_path, {"p1": 41})
    case = synthetic_case((30, 30, 30), make_affine((30, 30, 30)), seed=41)
    write_nifti(labels / "p1.nii.gz", case.label, case.affine)
    with pytest.raises(ValueError, match=r"p1\.nii\.gz: image \(44, 40, 36\) != label \(30, 30, 30\)"):
        evaluate(segmenter, pair_cases(images, labels), show_progress=False)


def test_a_label_of_the_same_shape_placed_elsewhere_is_refused(tmp_path: Path, segmenter: Segmenter) -> None:
    images, labels = _dataset(tmp_path, {"p1": 41})
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.4, 1.6), "RAS", (0, 10, 0)), seed=41)
    write_nifti(labels / "p1.nii.gz", case.label, case.affine)  # same voxels, other orientation
    with pytest.raises(ValueError, match=r"p1\.nii\.gz: the label's affine differs from the image's"):
        evaluate(segmenter, pair_cases(images, labels), show_progress=False)


def test_with_on_error_a_failing_case_is_reported_and_the_others_scored(tmp_path: Path, segmenter: Segmenter) -> None:
    images, labels = _dataset(tmp_path, {"p1": 41, "p2": 42, "p3": 43})
    (images / "p2.nii.gz").write_bytes(b"not a nifti file")
    failed: list[tuple[str, Exception]] = []
    rows = evaluate(segmenter, pair_cases(images, labels), show_progress=False,
                    on_error=lambda name, err: failed.append((name, err)))
    assert [name for name, _ in rows] == ["p1", "p3"]
    assert [name for name, _ in failed] == ["p2"] and "p2.nii.gz" in str(failed[0][1])
    with pytest.raises(Exception, match="p2.nii.gz"):  # without on_error the first failure stops it
        evaluate(segmenter, pair_cases(images, labels), show_progress=False)


def test_a_volume_too_large_once_resampled_is_refused_naming_its_file(tmp_path: Path, segmenter: Segmenter) -> None:
    images, labels = _dataset(tmp_path, {"p1": 41})
    case = synthetic_case(SHAPE, np.diag([1000.0, 1000.0, 1000.0, 1.0]), seed=42)  # a header in metres
    write_nifti(images / "in_metres.nii.gz", case.image, case.affine)
    write_nifti(labels / "in_metres.nii.gz", case.label, case.affine)
    with pytest.raises(ImageReadError, match=r"in_metres\.nii\.gz: resampled to the model's voxel size"):
        evaluate(segmenter, pair_cases(images, labels), show_progress=False)
