"""NIfTI reading (ISA-L, no whole-volume copy) and writing, against nibabel's own."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from atriumseg.pipeline.io import volumes as io
from atriumseg.pipeline.io.writing import write_image
from atriumseg.synthetic import make_affine
from atriumseg.transforms.context import StackNeighbours

SHAPE = (20, 23, 17)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_nifti_voxels_and_affine_match_nibabel(tmp_path: Path, suffix: str, klass: type) -> None:
    array = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    affine = make_affine(SHAPE, (1.2, 0.8, 2.5), "LPS", (5, 0, -10))
    path = tmp_path / f"scan{suffix}"
    nib.save(klass(array, affine), path)
    volume = io.read_image(path)
    assert volume.tensor.shape == (1, *SHAPE)
    np.testing.assert_array_equal(volume.tensor[0].numpy(), array)
    np.testing.assert_allclose(volume.tensor.affine.numpy(), nib.load(path).affine, atol=1e-6)


def test_big_endian_nifti_is_read_in_native_order(tmp_path: Path) -> None:
    array = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4), nib.Nifti1Header(endianness=">")), tmp_path / "big.nii.gz")
    np.testing.assert_array_equal(io.read_image(tmp_path / "big.nii.gz").tensor[0].numpy(), array)


def test_corrupt_compressed_data_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(4).normal(size=SHAPE).astype(np.float32), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the deflate stream: ISA-L reports an invalid block (not an OSError)
    path.write_bytes(bytes(data))
    with pytest.raises(io.ImageReadError, match="unreadable or corrupt"):
        io.read_image(path)


def test_scaled_integers_are_read_with_their_slope(tmp_path: Path) -> None:
    array = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    image = nib.Nifti1Image(array, np.eye(4))
    image.header.set_slope_inter(0.5, 10.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    np.testing.assert_allclose(io.read_image(tmp_path / "scaled.nii.gz").tensor[0].numpy(), array * 0.5 + 10.0)


def test_gzipped_mask_reads_back_identically(tmp_path: Path) -> None:
    mask = (np.random.default_rng(2).random(SHAPE) > 0.7).astype(np.uint8)
    path = write_image(nib.Nifti1Image(mask, make_affine(SHAPE)), tmp_path / "mask.nii.gz")
    written = nib.load(path)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)
    np.testing.assert_allclose(written.affine, make_affine(SHAPE), atol=1e-6)


def test_stacking_chosen_slices_equals_stacking_all_then_choosing() -> None:
    volume = torch.rand(1, 9, 6, 7)
    stack = StackNeighbours(slice_dim=1, context=2)
    everything = stack(volume)
    assert everything.shape == (5, 9, 6, 7)
    torch.testing.assert_close(everything[0, :, 0], volume[0, :, 0])  # edge slice repeated twice below
    torch.testing.assert_close(everything[4, :, 3], volume[0, :, 5])
    chosen = torch.tensor([0, 3, 5])
    torch.testing.assert_close(stack(volume[..., 1:4], chosen), everything.index_select(2, chosen)[..., 1:4])
