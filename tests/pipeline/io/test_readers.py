"""NIfTI reading (ISA-L, no whole-volume copy) and writing, against nibabel's own."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from helpers import write_dicom_series, write_itk

from atriumseg.pipeline.io import volumes as io
from atriumseg.pipeline.io.writing import write_image
from atriumseg.synthetic import make_affine, synthetic_case

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


NAN = float("nan")
# (field, byte offset in the NIfTI-1 header, struct format, values, qform and sform codes, phrase of the reason)
HEADER_CORRUPTIONS = [
    ("NaN voxel size", 80, "<f", (NAN,), (0, 0), "voxel size nan x 0.8 x 2.5 mm is not usable"),
    ("zero voxel size", 80, "<f", (0.0,), (0, 0), "voxel size 0 x 0.8 x 2.5 mm is not usable"),
    ("negative voxel size", 84, "<f", (-0.8,), (1, 0), "voxel size 1.2 x -0.8 x 2.5 mm is not usable"),
    ("NaN sform", 280, "<f", (NAN,), (0, 1), "the sform (srow_x/y/z) holds a value that is not a finite number"),
    ("NaN qform offset", 268, "<f", (NAN,), (1, 0), "the qform (quatern_b/c/d, qoffset_x/y/z) holds a value"),
    ("unknown datatype", 70, "<h", (999,), (1, 1), "unknown datatype code 999"),
    ("negative data offset", 108, "<f", (-100.0,), (1, 1), "data offset (vox_offset) is -100"),
    ("enormous dimensions", 42, "<3h", (30000, 30000, 30000), (1, 1), "30000 x 30000 x 30000 = 27,000,000,000,000"),
]


def corrupt_nifti(path: Path, offset: int, fmt: str, values: tuple, codes: tuple[int, int]) -> Path:
    """A valid LPS volume saved as NIfTI-1, then one header field overwritten (and the form codes set)."""
    array = np.random.default_rng(5).normal(size=SHAPE).astype(np.float32)
    image = nib.Nifti1Image(array, make_affine(SHAPE, (1.2, 0.8, 2.5), "LPS"))
    data = bytearray(image.to_bytes())
    struct.pack_into(fmt, data, offset, *values)
    struct.pack_into("<hh", data, 252, *codes)
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize(
    "field, offset, fmt, values, codes, phrase", HEADER_CORRUPTIONS, ids=[c[0] for c in HEADER_CORRUPTIONS]
)
def test_a_corrupt_header_field_is_a_read_error_naming_it(
    tmp_path: Path, suffix: str, field: str, offset: int, fmt: str, values: tuple, codes: tuple, phrase: str
) -> None:
    path = corrupt_nifti(tmp_path / f"scan{suffix}", offset, fmt, values, codes)
    with pytest.raises(io.ImageReadError) as caught:
        io.read_image(path)
    assert str(caught.value).startswith(f"{path}: ") and phrase in str(caught.value), str(caught.value)


def test_a_dicom_series_whose_slices_are_not_parallel_is_refused(tmp_path: Path) -> None:
    shape = (40, 42, 30)
    straight = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS"), seed=1)
    turned = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 1.5), "LPS", (0, 0, 30)), seed=1)
    uid, series = "1.2.826.0.1.3680043.2.1125.77", tmp_path / "series"
    write_dicom_series(series, straight.image / straight.image.max() * 2000, straight.affine, uid=uid, prefix="a_")
    write_dicom_series(tmp_path / "turned", turned.image / turned.image.max() * 2000, turned.affine, uid=uid,
                       prefix="b_")
    for k in range(15, 30):  # the upper half of the series is rotated by 30 degrees in-plane
        (series / f"a_{k:03d}.dcm").unlink()
        (tmp_path / "turned" / f"b_{k:03d}.dcm").rename(series / f"b_{k:03d}.dcm")
    with pytest.raises(io.ImageReadError, match=r"slices do not share one orientation .* in 15 of 30 files"):
        io.read_image(series)


@pytest.mark.parametrize("sideways_mm, refused", [(0.5, True), (0.005, False)])
def test_a_dicom_series_whose_slices_sit_sideways_of_the_normal_is_refused(
    tmp_path: Path, sideways_mm: float, refused: bool
) -> None:
    shape = (40, 42, 8)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 2.0), "LPS"), seed=2)
    series = write_dicom_series(tmp_path / "series", case.image / case.image.max() * 2000, case.affine)
    for path in series.glob("*.dcm"):  # each slice moved along its rows: a gantry tilt (or, small, rounding)
        dataset = pydicom.dcmread(path)
        row = np.asarray(dataset.ImageOrientationPatient[:3], float)
        position = np.asarray(dataset.ImagePositionPatient, float) + sideways_mm * (dataset.InstanceNumber - 1) * row
        dataset.ImagePositionPatient = [f"{v:.4f}" for v in position]
        dataset.save_as(path)
    if refused:
        with pytest.raises(io.ImageReadError, match=r"sideways of the slice normal \(up to 3.50 mm: a gantry tilt"):
            io.read_image(series)
    else:
        assert io.read_image(series).tensor.shape[1:] == shape


def test_a_dicom_series_with_several_images_per_position_is_refused_saying_so(tmp_path: Path) -> None:
    shape = (40, 42, 8)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 2.0), "LPS"), seed=3)
    series = write_dicom_series(tmp_path / "series", case.image / case.image.max() * 2000, case.affine)
    for path in sorted(series.glob("*.dcm")):  # a second phase at every position, as a cine series holds
        dataset = pydicom.dcmread(path)
        dataset.SOPInstanceUID = f"{dataset.SOPInstanceUID}.2"
        dataset.InstanceNumber = dataset.InstanceNumber + 8
        dataset.save_as(series / f"phase2_{path.name}")
    with pytest.raises(io.ImageReadError, match=r"16 images at 8 slice positions \(several images at one position"):
        io.read_image(series)


def test_a_zero_voxel_size_in_an_nrrd_header_is_refused(tmp_path: Path) -> None:
    header = (
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 20 23 17\n"
        "space directions: (1.2,0,0) (0,0,0) (0,0,2.5)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (0,0,0)\n\n"
    )
    path = tmp_path / "flat.nrrd"
    path.write_bytes(header.encode() + np.ones(SHAPE, np.float32).tobytes())
    with pytest.raises(io.ImageReadError, match=r"voxel size 1.2 x 0 x 2.5 mm is not usable"):
        io.read_image(path)


def test_one_volume_stored_as_4d_is_read_as_that_volume_with_its_geometry(tmp_path: Path) -> None:
    shape = (20, 22, 24)
    case = synthetic_case(shape, make_affine(shape, (0.7, 0.8, 3.0), "LPS", (15, -10, 5)), seed=3)
    flat = write_itk(tmp_path / "flat.nrrd", case.image, case.affine)
    stacked = sitk.JoinSeries(sitk.ReadImage(str(flat)))
    assert stacked.GetSize() == (*shape, 1)
    sitk.WriteImage(stacked, str(tmp_path / "stacked.nrrd"))
    three, four = io.read_image(flat), io.read_image(tmp_path / "stacked.nrrd")
    assert torch.equal(three.tensor, four.tensor)
    np.testing.assert_allclose(four.tensor.affine.numpy(), three.tensor.affine.numpy(), atol=1e-6)
    assert not np.allclose(four.tensor.affine.numpy(), np.eye(4))
