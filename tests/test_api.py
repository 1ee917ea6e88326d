"""The Python API checks its arguments before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import write_nifti
from monai.data import MetaTensor

from atriumseg.api import segment
from atriumseg.pipeline.inference.segmenter import Segmenter
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
