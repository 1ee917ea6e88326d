"""Masks keep the input's exact geometry and land on the same anatomy, whatever the grid and format."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import dice, write_dicom_series, write_itk, write_nifti
from monai.data import MetaTensor

from atriumseg.api import segment
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.readers import sitk_affine_ras
from atriumseg.synthetic import make_affine, synthetic_case, world_coordinates

# (id, shape, spacing, axis codes, rotation in degrees): each stores the same world anatomy differently.
GRIDS = [
    ("ras", (47, 45, 39), (1.5, 1.5, 1.5), "RAS", (0, 0, 0)),
    ("lps", (45, 48, 37), (1.4, 1.6, 1.5), "LPS", (0, 0, 0)),
    ("oblique", (49, 46, 41), (1.5, 1.5, 1.5), "RAS", (20, -12, 15)),
    ("anisotropic", (57, 41, 23), (1.2, 1.7, 2.8), "PIR", (0, 8, 0)),
]
MIN_DICE = 0.8


def _case(shape, spacing, codes, rotation, seed=210):
    return synthetic_case(shape, make_affine(shape, spacing, codes, rotation), seed=seed)


@pytest.mark.parametrize(("grid_id", "shape", "spacing", "codes", "rotation"), GRIDS, ids=[g[0] for g in GRIDS])
def test_nifti_mask_has_input_header_and_finds_the_atrium(
    tmp_path: Path, segmenter: Segmenter, grid_id, shape, spacing, codes, rotation
) -> None:
    case = _case(shape, spacing, codes, rotation)
    src = write_nifti(tmp_path / f"{grid_id}.nii.gz", case.image, case.affine)
    mask = segment(src, segmenter, output=tmp_path / "out" / f"{grid_id}.nii.gz")
    written = nib.load(tmp_path / "out" / f"{grid_id}.nii.gz")
    original = nib.load(src)
    for image in (mask, written):
        assert image.shape == shape
        np.testing.assert_allclose(image.affine, original.affine, atol=1e-6)
        np.testing.assert_allclose(image.header.get_qform(), original.header.get_qform(), atol=1e-6)
        assert int(image.header["qform_code"]) == int(original.header["qform_code"])
        assert int(image.header["sform_code"]) == int(original.header["sform_code"])
    data = np.asanyarray(written.dataobj)
    assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}
    score = dice(data, case.label)
    assert score > MIN_DICE, f"{grid_id}: Dice {score:.3f} <= {MIN_DICE}"


def test_a_nifti_mask_keeps_the_geometry_not_the_inputs_display_window(tmp_path: Path, segmenter: Segmenter) -> None:
    case = _case((40, 42, 30), (1.25, 1.25, 2.5), "LPS", (0, 10, 0))
    source = nib.Nifti1Image(case.image, case.affine)
    source.header["cal_min"], source.header["cal_max"] = 0.0, 2000.0
    source.header.set_intent("estimate")
    source.header["descrip"] = b"LGE 3D, TI 300"
    nib.save(source, tmp_path / "lge.nii.gz")
    segment(tmp_path / "lge.nii.gz", segmenter, output=tmp_path / "mask.nii.gz")
    header = nib.load(tmp_path / "mask.nii.gz").header
    assert (float(header["cal_min"]), float(header["cal_max"])) == (0.0, 0.0)
    assert header.get_intent()[0] == "none" and header["descrip"].item() == b""
    np.testing.assert_allclose(nib.load(tmp_path / "mask.nii.gz").affine, nib.load(tmp_path / "lge.nii.gz").affine)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize(("grid_id", "shape", "spacing", "codes", "rotation"), GRIDS[1:], ids=[g[0] for g in GRIDS[1:]])
def test_itk_formats_keep_origin_spacing_direction(
    tmp_path: Path, segmenter: Segmenter, suffix, grid_id, shape, spacing, codes, rotation
) -> None:
    case = _case(shape, spacing, codes, rotation)
    src = write_itk(tmp_path / f"{grid_id}{suffix}", case.image, case.affine)
    out = tmp_path / "out" / f"{grid_id}{suffix}"
    segment(src, segmenter, output=out)
    original, written = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    assert written.GetSize() == original.GetSize()
    np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-6)
    assert written.GetPixelID() == sitk.sitkUInt8
    score = dice(sitk.GetArrayFromImage(written).transpose(2, 1, 0), case.label)
    assert score > MIN_DICE, f"{grid_id}{suffix}: Dice {score:.3f} <= {MIN_DICE}"


@pytest.mark.parametrize("grid", [GRIDS[1], GRIDS[2]], ids=["lps", "oblique"])
def test_dicom_series_mask_matches_the_series_geometry(tmp_path: Path, segmenter: Segmenter, grid) -> None:
    grid_id, shape, spacing, codes, rotation = grid
    case = _case(shape, spacing, codes, rotation)
    scaled = case.image / case.image.max() * 2000
    series = write_dicom_series(tmp_path / "series_folder", scaled, case.affine)
    out = tmp_path / "out" / "series_folder.nii.gz"
    mask = segment(series, segmenter, output=out)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series)))
    original = reader.Execute()
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == original.GetSize() == mask.GetSize()
    np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-4)
    truth = synthetic_case(original.GetSize(), sitk_affine_ras(original), seed=210).label
    score = dice(sitk.GetArrayFromImage(written).transpose(2, 1, 0), truth)
    assert score > MIN_DICE, f"DICOM {grid_id}: Dice {score:.3f} <= {MIN_DICE}"


def test_masks_of_two_grids_agree_in_world_space(tmp_path: Path, segmenter: Segmenter) -> None:
    """The oblique anisotropic mask, looked up voxel by voxel in the RAS grid's mask, is the same anatomy."""
    a = _case(*GRIDS[0][1:])
    b = _case(*GRIDS[3][1:])
    mask_a = np.asanyarray(segment(nib.Nifti1Image(a.image, a.affine), segmenter).dataobj)
    mask_b = np.asanyarray(segment(nib.Nifti1Image(b.image, b.affine), segmenter).dataobj)
    world_b = world_coordinates(b.image.shape, b.affine)
    ijk_in_a = np.rint(world_b @ np.linalg.inv(a.affine)[:3, :3].T + np.linalg.inv(a.affine)[:3, 3]).astype(int)
    inside = np.all((ijk_in_a >= 0) & (ijk_in_a < np.array(a.image.shape)), axis=-1)
    looked_up = np.zeros(b.image.shape, np.uint8)
    looked_up[inside] = mask_a[tuple(ijk_in_a[inside].T)]
    score = dice(looked_up, mask_b)
    assert score > MIN_DICE, f"world-space agreement Dice {score:.3f} <= {MIN_DICE}"


@pytest.mark.parametrize("seed", [401, 402])
def test_focused_inference_equals_the_whole_volume_pass(model_folder: Path, seed: int) -> None:
    """Focusing on the slab that holds the atrium changes no voxel of the mask (slices are predicted
    independently; only stray detections outside the slab, which clean-up removes anyway, are skipped)."""
    shape = (44, 46, 70)
    case = _case(shape, (1.5, 1.5, 1.5), "PIR", (0, 0, 0), seed=seed)
    image = MetaTensor(torch.from_numpy(case.image)[None], affine=torch.from_numpy(case.affine))
    whole = Segmenter.from_path(model_folder, device="cpu", focus=False)(image)
    focused = Segmenter.from_path(model_folder, device="cpu", focus=True)(image)
    assert whole.sum() > 0 and torch.equal(whole.as_tensor(), focused.as_tensor())
