"""DICOM SEG geometry: every frame, placed by its own position and orientation, lands on the NIfTI mask
of the same case voxel for voxel and on the world-space ground truth, however the series is stored."""

from __future__ import annotations

import random
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import (
    SERIES_GRID as GRID,
)
from helpers import (
    SERIES_SPACING as SPACING,
)
from helpers import (
    SERIES_UID,
    placed_frames,
    write_dicom_series,
    write_series,
)
from helpers import series_ground_truth as ground_truth
from pydicom.uid import SegmentationStorage
from scipy.spatial.transform import Rotation

from atriumseg._version import __version__
from atriumseg.pipeline.io.dicom_seg import write_dicom_seg
from atriumseg.pipeline.io.names import SEG_SUFFIX
from atriumseg.pipeline.io.readers import series_files
from atriumseg.pipeline.io.volumes import read_image
from atriumseg.pipeline.io.writing import write_image
from atriumseg.synthetic import make_affine, synthetic_case

OBLIQUE = Rotation.from_euler("xyz", (20, -15, 30), degrees=True).as_matrix()
AXIAL = ((1, 0, 0), (0, 1, 0))  # LPS row and column cosines
SAGITTAL = ((0, 1, 0), (0, 0, -1))
# (id, row cosine, column cosine, spacing, files stored against the spatial order)
CASES = [
    ("axial", *AXIAL, SPACING, False),
    ("sagittal", *SAGITTAL, SPACING, False),
    ("oblique", tuple(OBLIQUE[:, 0]), tuple(OBLIQUE[:, 1]), SPACING, False),
    ("axial-negated-row", (-1, 0, 0), (0, 1, 0), SPACING, False),
    ("sagittal-negated-column", (0, 1, 0), (0, 0, 1), SPACING, False),
    ("non-square-pixels", *AXIAL, (0.7, 1.1, 2.5), False),
    ("axial-reversed", *AXIAL, SPACING, True),
    ("oblique-non-square-reversed", tuple(OBLIQUE[:, 0]), tuple(OBLIQUE[:, 1]), (1.1, 0.8, 2.2), True),
]


def mask_of(folder: Path):
    """The series read as the product reads it, and the ground truth sampled at its voxel centres (x, y, z)."""
    volume = read_image(folder)
    affine = volume.tensor.affine.numpy().astype(np.float64)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in GRID], indexing="ij"), axis=-1)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    return volume, ground_truth(ras * np.array([-1.0, -1.0, 1.0])).astype(np.uint8)


@pytest.mark.parametrize(("case", "row", "column", "spacing", "reverse"), CASES, ids=[c[0] for c in CASES])
def test_seg_frames_equal_the_nifti_mask_and_the_ground_truth(tmp_path: Path, case, row, column, spacing, reverse):
    folder = write_series(tmp_path / case, row, column, spacing, reverse)
    volume, mask = mask_of(folder)
    nifti = nib.load(write_image(volume.geometry.image(mask), tmp_path / f"{case}.nii.gz"))
    expected = np.asarray(nifti.dataobj)
    files = series_files(folder, SERIES_UID)
    path = write_dicom_seg(mask, volume.geometry, files, tmp_path / f"{case}{SEG_SUFFIX}")

    seg = hd.seg.segread(path)
    to_voxel = np.linalg.inv(nifti.affine)
    placed = np.zeros(GRID, np.uint8)
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    for i, (lps, pixels) in enumerate(placed_frames(seg)):
        ijk = (lps * np.array([-1.0, -1.0, 1.0])) @ to_voxel[:3, :3].T + to_voxel[:3, 3]
        index = np.round(ijk).astype(int)
        assert np.abs(ijk - index).max() < 1e-3, f"{case}: frame {i} is off the NIfTI grid"
        assert (index >= 0).all() and (index < GRID).all(), f"{case}: frame {i} is outside the NIfTI volume"
        placed[index[..., 0], index[..., 1], index[..., 2]] = pixels
        wrong = int((ground_truth(lps) != pixels.astype(bool)).sum())
        assert wrong == 0, f"{case}: frame {i} has {wrong} pixels off the world-space ground truth"
        source = seg.PerFrameFunctionalGroupsSequence[i].DerivationImageSequence[0].SourceImageSequence[0]
        source_position = pydicom.dcmread(by_uid[source.ReferencedSOPInstanceUID]).ImagePositionPatient
        np.testing.assert_allclose(source_position, lps[0, 0], atol=1e-4, err_msg=f"{case}: frame {i} source")
    differing = int((placed != expected).sum())
    assert differing == 0, f"{case}: {differing} voxels differ between the SEG and the NIfTI mask"
    assert expected.sum() > 300, f"{case}: only {expected.sum()} atrium voxels; the test needs a real shape"
    assert 0 < seg.NumberOfFrames < GRID[2], f"{case}: {seg.NumberOfFrames} frames; empty ones should be left out"


def test_files_in_any_order_give_the_same_frames(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *SAGITTAL, reverse=True)
    volume, mask = mask_of(folder)
    files = series_files(folder, SERIES_UID)
    shuffled = random.Random(5).sample(files, len(files))
    first = hd.seg.segread(write_dicom_seg(mask, volume.geometry, files, tmp_path / "a.seg.dcm"))
    second = hd.seg.segread(write_dicom_seg(mask, volume.geometry, shuffled, tmp_path / "b.seg.dcm"))
    for (lps_a, pixels_a), (lps_b, pixels_b) in zip(placed_frames(first), placed_frames(second), strict=True):
        np.testing.assert_allclose(lps_a, lps_b)
        np.testing.assert_array_equal(pixels_a, pixels_b)


def test_seg_describes_the_atrium_and_copies_patient_and_study(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL)
    volume, mask = mask_of(folder)
    files = series_files(folder, SERIES_UID)
    seg = hd.seg.segread(write_dicom_seg(mask, volume.geometry, files, tmp_path / "case.seg.dcm"))
    source = pydicom.dcmread(files[0], stop_before_pixels=True)

    assert (seg.Modality, seg.SegmentationType, seg.SOPClassUID) == ("SEG", "BINARY", SegmentationStorage)
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "AccessionNumber", "StudyID", "StudyDate", "FrameOfReferenceUID"):
        assert seg.get(keyword) == source.get(keyword), keyword
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    segment = seg.SegmentSequence[0]
    assert (segment.SegmentNumber, segment.SegmentLabel) == (1, "Left atrium")
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    property_type = segment.SegmentedPropertyTypeCodeSequence[0]
    category = segment.SegmentedPropertyCategoryCodeSequence[0]
    assert (property_type.CodeValue, property_type.CodingSchemeDesignator) == ("82471001", "SCT")
    assert (category.CodeValue, category.CodingSchemeDesignator, category.CodeMeaning) == (
        "123037004", "SCT", "Anatomical Structure")
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("atriumseg", __version__)
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES_UID


def test_an_empty_mask_gives_a_seg_of_empty_frames(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL)
    volume, mask = mask_of(folder)
    files = series_files(folder, SERIES_UID)
    seg = hd.seg.segread(write_dicom_seg(np.zeros_like(mask), volume.geometry, files, tmp_path / "e.seg.dcm"))
    assert (seg.NumberOfFrames, int(seg.pixel_array.sum())) == (GRID[2], 0)


def test_missing_type_2_attributes_still_give_a_seg(tmp_path: Path) -> None:
    dropped = ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber", "StudyTime")
    folder = write_series(tmp_path / "series", *AXIAL, drop=dropped)
    volume, mask = mask_of(folder)
    files = series_files(folder, SERIES_UID)
    seg = hd.seg.segread(write_dicom_seg(mask, volume.geometry, files, tmp_path / "c.seg.dcm"))
    assert all(seg.get(keyword) in ("", None) for keyword in dropped)
    assert seg.PatientID == "PAT-0042"


def test_an_existing_seg_is_kept_unless_overwrite_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL)
    volume, mask = mask_of(folder)
    files = series_files(folder, SERIES_UID)
    out = tmp_path / "out"
    path = write_dicom_seg(mask, volume.geometry, files, out / "case.seg.dcm")
    before, first_uid = path.read_bytes(), pydicom.dcmread(path).SOPInstanceUID
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dicom_seg(np.zeros_like(mask), volume.geometry, files, path)
    assert path.read_bytes() == before
    write_dicom_seg(mask, volume.geometry, files, path, overwrite=True)
    assert pydicom.dcmread(path).SOPInstanceUID != first_uid
    assert [p.name for p in out.iterdir()] == ["case.seg.dcm"]


def test_a_mask_or_files_from_another_grid_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "axial", *AXIAL)
    volume, mask = mask_of(folder)
    other = write_series(tmp_path / "sagittal", *SAGITTAL, SeriesInstanceUID="1.2.3.9")
    out = tmp_path / "out" / "case.seg.dcm"
    with pytest.raises(ValueError, match="ImageOrientationPatient"):
        write_dicom_seg(mask, volume.geometry, series_files(other, "1.2.3.9"), out)
    with pytest.raises(ValueError, match="11 source files for the mask's 12 slices"):
        write_dicom_seg(mask, volume.geometry, series_files(folder, SERIES_UID)[:-1], out)
    with pytest.raises(ValueError, match="36 x 40 voxels"):
        write_dicom_seg(np.zeros((36, 40, 12), np.uint8), volume.geometry, series_files(folder, SERIES_UID), out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_series_without_frame_of_reference_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL, drop=("FrameOfReferenceUID",))
    volume, mask = mask_of(folder)
    with pytest.raises(ValueError, match=r"slice_\d+\.dcm: lacks FrameOfReferenceUID"):
        write_dicom_seg(mask, volume.geometry, series_files(folder, SERIES_UID), tmp_path / "case.seg.dcm")


def test_a_series_whose_gaps_drift_within_what_the_reader_accepts_gets_its_seg(tmp_path: Path) -> None:
    shape = (40, 36, 64)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.5, 2.5), "LPS"), seed=6)
    folder = write_dicom_series(tmp_path / "series", case.image / case.image.max() * 2000, case.affine)
    for path in folder.glob("*.dcm"):  # gaps of 2.49 mm for the first half of the stack, 2.51 mm after
        dataset = pydicom.dcmread(path)
        k = dataset.InstanceNumber - 1
        drift = -0.01 * min(k, 32) + 0.01 * max(0, k - 32)
        dataset.ImagePositionPatient = [f"{v:.4f}" for v in (*dataset.ImagePositionPatient[:2],
                                                               float(dataset.ImagePositionPatient[2]) + drift)]
        dataset.FrameOfReferenceUID, dataset.SliceThickness = "1.2.826.0.1.3680043.2.1125.9", 2.5
        dataset.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.8"
        dataset.save_as(path)
    volume = read_image(folder)
    mask = (volume.tensor[0].numpy() > np.median(volume.tensor[0].numpy())).astype(np.uint8)
    seg = write_dicom_seg(mask, volume.geometry, series_files(folder, "1.2.826.0.1.3680043.2.1125.1"),
                          tmp_path / "case.seg.dcm")
    assert pydicom.dcmread(seg).NumberOfFrames > 0
