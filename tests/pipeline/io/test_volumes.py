"""Reading a volume: outputs copy the header exactly as stored, and what cannot be segmented is refused."""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from atriumseg.pipeline.io.volumes import ImageReadError, check_resampled_size, check_volume, read_image

SHAPE = (30, 32, 20)
QFORM = np.array([[0.0, 0.0, 2.0, 7.0], [-1.5, 0.0, 0.0, 6.0], [0.0, 1.5, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def _nifti_with_srows(path: Path, srows: np.ndarray, sform_code: int = 2) -> Path:
    """A NIfTI-1 file with a valid qform and the given sform rows stored as they are (never repaired)."""
    image = nib.Nifti1Image(np.random.default_rng(0).random(SHAPE, dtype=np.float32), QFORM)
    image.set_qform(QFORM, 1)
    image.set_sform(QFORM, sform_code)
    data = bytearray(image.to_bytes())
    data[254:256] = struct.pack("<h", sform_code)
    data[280:328] = struct.pack("<12f", *srows.ravel())
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("zero_row", [0, 1, 2])
def test_a_singular_sform_is_kept_exactly_in_the_outputs(tmp_path: Path, zero_row: int) -> None:
    srows = QFORM[:3].copy()
    srows[zero_row] = 0.0
    source = _nifti_with_srows(tmp_path / "singular.nii", srows)
    volume = read_image(source)
    np.testing.assert_allclose(volume.tensor.affine.numpy(), QFORM)  # inference reads the usable qform
    nib.save(volume.geometry.image(np.ones(SHAPE, np.uint8)), tmp_path / "mask.nii")
    stored, written = nib.load(source).header, nib.load(tmp_path / "mask.nii").header
    for key in ("srow_x", "srow_y", "srow_z", "sform_code", "qform_code", "quatern_b", "quatern_c", "quatern_d",
                "qoffset_x", "qoffset_y", "qoffset_z", "pixdim"):
        np.testing.assert_array_equal(written[key], stored[key], err_msg=key)


def test_a_usable_sform_is_what_inference_reads(tmp_path: Path) -> None:
    sform = QFORM[:3] + [[0, 0, 0, 1.0], [0, 0, 0, 2.0], [0, 0, 0, 3.0]]
    volume = read_image(_nifti_with_srows(tmp_path / "shifted.nii", sform))
    np.testing.assert_allclose(volume.tensor.affine.numpy()[:3], sform)
    assert volume.name == "shifted"


@pytest.mark.parametrize(
    ("shape", "phrase"),
    [((1, 30, 30, 1), "2D image"), ((2, 30, 30, 20), "4D image holding 2 volumes"),
     ((1, 0, 30, 20), "image has no voxels"),
     ((1, 30, 10, 10), "too small"), ((1, 30, 30, 20, 2), "4 spatial dimensions")],
)
def test_what_cannot_be_segmented_is_refused_with_the_reason(shape: tuple[int, ...], phrase: str) -> None:
    with pytest.raises(ImageReadError, match=phrase):
        check_volume(torch.ones(shape), "case")


def test_a_volume_without_a_finite_voxel_is_refused() -> None:
    with pytest.raises(ImageReadError, match="no finite voxel"):
        check_volume(torch.full((1, 30, 30, 20), float("nan")), "case")
    check_volume(torch.cat([torch.full((1, 30, 30, 1), float("nan")), torch.ones(1, 30, 30, 19)], dim=-1), "case")


def test_a_volume_too_large_once_resampled_is_refused_before_resampling() -> None:
    tensor = MetaTensor(torch.zeros(1, 24, 24, 20))
    affine = np.diag([1000.0, 1000.0, 1000.0, 1.0])  # a header in metres, not mm
    with pytest.raises(ImageReadError, match=r"is it in micrometres, read as mm\?"):
        check_resampled_size(tensor, affine, (1.25, 1.25, 1.25), "RAS", "case")
    check_resampled_size(tensor, np.diag([1.0, 1.0, 1.0, 1.0]), (1.25, 1.25, 1.25), "RAS", "case")


@pytest.mark.parametrize(("name", "content", "phrase"),
                         [("empty.nii.gz", b"", "empty file"), ("notes.txt", b"text", "not a supported image")])
def test_unreadable_files_are_refused_before_reading(tmp_path: Path, name: str, content: bytes, phrase: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=phrase):
        read_image(tmp_path / name)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
