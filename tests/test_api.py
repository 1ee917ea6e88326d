"""The Python API checks its arguments before any work."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_dicom_series, write_nifti
from monai.data import MetaTensor

import atriumseg
from atriumseg.api import segment
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import ImageReadError
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (40, 38, 30)


@pytest.fixture()
def untouchable(segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch) -> Segmenter:
    """The stand-in segmenter, made to fail the test if it is asked to segment anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("segmenting started before the arguments were checked")

    monkeypatch.setattr(segmenter, "segment", refuse)
    return segmenter


def test_an_existing_output_is_refused_before_segmenting(tmp_path: Path, untouchable: Segmenter) -> None:
    case = synthetic_case(SHAPE, make_affine(SHAPE), seed=3)
    src = write_nifti(tmp_path / "scan.nii.gz", case.image, case.affine)
    existing = tmp_path / "mask.nii.gz"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        segment(src, untouchable, output=existing)
    assert existing.read_bytes() == b"keep me"


def test_output_for_a_metatensor_is_refused_before_segmenting(tmp_path: Path, untouchable: Segmenter) -> None:
    image = MetaTensor(torch.zeros(1, *SHAPE), affine=torch.eye(4))
    with pytest.raises(ValueError, match="output= needs a path"):
        segment(image, untouchable, output=tmp_path / "mask.nii.gz")


def test_bad_axis_codes_are_refused_before_segmenting(tmp_path: Path, untouchable: Segmenter) -> None:
    image = MetaTensor(torch.zeros(1, *SHAPE), affine=torch.eye(4))
    with pytest.raises(ValueError, match="three axis codes"):
        segment(image, untouchable, assume_orientation="RRS")


def test_measure_with_height_and_weight_gives_bsa_and_lavi_and_nan_without() -> None:
    mask, affine = np.zeros((10, 10, 10), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])
    mask[2:7, 2:7, 2:7] = 1  # 125 voxels of 8 mm³: 1 mL
    indexed = atriumseg.measure(mask, affine, height_cm=175, weight_kg=70)
    assert indexed.volume_ml == pytest.approx(1.0)
    assert indexed.bsa_m2 == pytest.approx(1.8447, abs=1e-4)
    assert indexed.lavi_ml_m2 == pytest.approx(1.0 / indexed.bsa_m2)
    for plain in (atriumseg.measure(mask, affine), atriumseg.measure(mask, affine, height_cm=1.75, weight_kg=70)):
        assert math.isnan(plain.bsa_m2) and math.isnan(plain.lavi_ml_m2) and plain.volume_ml == indexed.volume_ml
    empty = atriumseg.measure(np.zeros_like(mask), affine, height_cm=175, weight_kg=70)
    assert empty.bsa_m2 == indexed.bsa_m2 and math.isnan(empty.lavi_ml_m2)  # no atrium, not an index of 0


def test_a_nibabel_image_is_read_as_its_file_is(tmp_path: Path, segmenter: Segmenter) -> None:
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:7, 2:7, 2:7] = 1
    image = nib.Nifti1Image(mask, np.eye(4))
    image.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), 1)  # the sform says 2 mm; pixdim and the qform say 1 mm
    nib.save(image, tmp_path / "mask.nii.gz")
    from_object = atriumseg.measure(nib.load(tmp_path / "mask.nii.gz")).volume_ml
    assert from_object == atriumseg.measure(tmp_path / "mask.nii.gz").volume_ml == pytest.approx(0.125)
    assert atriumseg.measure(image).volume_ml == from_object
    np.testing.assert_array_equal(image.get_sform(), np.diag([2.0, 2.0, 2.0, 1.0]))  # the caller's header untouched
    case = synthetic_case(SHAPE, make_affine(SHAPE), seed=4)
    stacked = nib.Nifti1Image(case.image[..., None], case.affine)  # one volume stored as 4D
    assert segment(stacked, segmenter).shape == SHAPE


def test_one_series_of_a_dicom_folder_is_named_by_its_uid(tmp_path: Path, segmenter: Segmenter) -> None:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "LPS"), seed=5)
    for uid, prefix in (("1.2.3.4.1", "a_"), ("1.2.3.4.2", "b_")):
        write_dicom_series(tmp_path / "study", case.image, case.affine, uid=uid, prefix=prefix)
    with pytest.raises(ImageReadError, match=r"study: holds 2 DICOM series; name one by its UID \(series_uid\)$"):
        segment(tmp_path / "study", segmenter)
    assert segment(tmp_path / "study", segmenter, series_uid="1.2.3.4.2").GetSize() == SHAPE
