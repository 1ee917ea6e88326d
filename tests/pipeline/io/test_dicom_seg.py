"""DICOM SEG geometry: every frame, placed by its own position and orientation, lands on the NIfTI mask
of the same case voxel for voxel and on the world-space ground truth, however the series is stored."""

from __future__ import annotations

import math
import random
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, SegmentationStorage, generate_uid
from scipy.spatial.transform import Rotation

from atriumseg._version import __version__
from atriumseg.pipeline.io.dicom_seg import SEG_SUFFIX, series_files, write_dicom_seg
from atriumseg.pipeline.io.dicom_tags import read_series_tags
from atriumseg.pipeline.io.volumes import read_image
from atriumseg.pipeline.io.writing import write_image

GRID = (40, 36, 12)  # columns, rows, slices
SPACING = (0.9, 0.9, 2.5)  # between columns, between rows, between slices (mm)
SERIES_UID = "1.2.826.0.1.3680043.8.498.1"
SEMI_AXES = np.array([11.0, 8.0, 6.0])
ELLIPSOID_ROTATION = Rotation.from_euler("xyz", (15, -20, 35), degrees=True).as_matrix()
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


def ground_truth(lps: np.ndarray) -> np.ndarray:
    """A rotated ellipsoid in world (LPS mm) space, 1-2 mm off the grids' centre."""
    local = (lps - np.array([11.1, -20.8, 35.6])) @ ELLIPSOID_ROTATION
    return ((local / SEMI_AXES) ** 2).sum(-1) <= 1


def frame_points(position, row_cosine, column_cosine, pixel_spacing, rows: int, columns: int) -> np.ndarray:
    """LPS coordinates (rows, columns, 3) of every pixel centre of a DICOM frame."""
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    return (
        np.asarray(position, float)
        + (c * float(pixel_spacing[1]))[..., None] * np.asarray(row_cosine, float)
        + (r * float(pixel_spacing[0]))[..., None] * np.asarray(column_cosine, float)
    )


def write_series(
    folder: Path, row_cosine, column_cosine, spacing=SPACING, reverse: bool = False, drop: tuple[str, ...] = (),
    **tags: object,
) -> Path:
    """An MR series on ``GRID`` centred at (10, -20, 35) LPS, one file per slice, the image being the ground truth.

    Slices step along row x column; with ``reverse`` the file names and InstanceNumbers run the other way.
    Keyword ``tags`` override the patient's and study's; ``drop`` leaves attributes out.
    """
    folder.mkdir(parents=True)
    row, col = np.asarray(row_cosine, float), np.asarray(column_cosine, float)
    normal = np.cross(row, col)
    columns, rows, depth = GRID
    centre = np.array([10.0, -20.0, 35.0])
    extent = (columns - 1) * spacing[0] * row + (rows - 1) * spacing[1] * col + (depth - 1) * spacing[2] * normal
    first = centre - extent / 2
    study, frame_of_reference = generate_uid(), generate_uid()
    values = dict(
        PatientName="Synthetic^Atrium", PatientID="PAT-0042", PatientBirthDate="19700101", PatientSex="F",
        PatientSize="1.75", PatientWeight="70", StudyDate="20250102", StudyTime="101500", AccessionNumber="ACC-7",
        StudyID="S1", SeriesDescription="cine sax", SeriesNumber=7,
    )
    values.update(tags)
    for k in range(depth):
        position = first + k * spacing[2] * normal
        index = depth - 1 - k if reverse else k
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, SERIES_UID, frame_of_reference
        ds.Modality, ds.ImageType, ds.InstanceNumber = "MR", ["ORIGINAL", "PRIMARY", "M"], index + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
        ds.SliceThickness = f"{spacing[2]:g}"
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        truth = ground_truth(frame_points(position, row, col, spacing[1::-1], rows, columns))
        ds.PixelData = (100 + 800 * truth).astype("<u2").tobytes()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        for keyword in drop:
            delattr(ds, keyword)
        ds.save_as(folder / f"slice_{index:03d}.dcm", enforce_file_format=True)
    return folder


def mask_of(folder: Path):
    """The series read as the product reads it, and the ground truth sampled at its voxel centres (x, y, z)."""
    volume = read_image(folder)
    affine = volume.tensor.affine.numpy().astype(np.float64)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in GRID], indexing="ij"), axis=-1)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    return volume, ground_truth(ras * np.array([-1.0, -1.0, 1.0])).astype(np.uint8)


def placed_frames(seg: Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each SEG frame's LPS pixel centres (by its own position and the shared orientation) and its pixels."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    cosines = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    pixel_spacing = shared.PixelMeasuresSequence[0].PixelSpacing
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    return [
        (frame_points(item.PlanePositionSequence[0].ImagePositionPatient, cosines[:3], cosines[3:], pixel_spacing,
                      seg.Rows, seg.Columns), pixels[i])
        for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence)
    ]


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
    for (lps_a, pixels_a), (lps_b, pixels_b) in zip(placed_frames(first), placed_frames(second)):
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


def test_series_tags_are_read_from_the_header(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL)
    tags = read_series_tags(series_files(folder, SERIES_UID)[0])
    assert tags.identifiers() == {
        "patient_id": "PAT-0042", "study_uid": pydicom.dcmread(folder / "slice_000.dcm").StudyInstanceUID,
        "series_uid": SERIES_UID, "accession_number": "ACC-7", "series_description": "cine sax",
    }
    assert (tags.patient_size_m, tags.patient_weight_kg) == (1.75, 70.0)


def test_absent_or_garbled_body_size_tags_are_none_or_nan(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL, PatientSize="1.75", PatientWeight="", drop=("PatientSize",))
    tags = read_series_tags(folder / "slice_000.dcm")
    assert (tags.patient_size_m, tags.patient_weight_kg) == (None, None)
    garbled = write_series(tmp_path / "garbled", *AXIAL, PatientSize="9.99") / "slice_000.dcm"
    garbled.write_bytes(garbled.read_bytes().replace(b"9.99", b"tall"))
    assert math.isnan(read_series_tags(garbled).patient_size_m)


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
    with pytest.raises(ValueError, match="no source file for slices"):
        write_dicom_seg(mask, volume.geometry, series_files(folder, SERIES_UID)[:-1], out)
    with pytest.raises(ValueError, match="36 x 40 voxels"):
        write_dicom_seg(np.zeros((36, 40, 12), np.uint8), volume.geometry, series_files(folder, SERIES_UID), out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_series_without_frame_of_reference_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series", *AXIAL, drop=("FrameOfReferenceUID",))
    volume, mask = mask_of(folder)
    with pytest.raises(ValueError, match=r"slice_\d+\.dcm: lacks FrameOfReferenceUID"):
        write_dicom_seg(mask, volume.geometry, series_files(folder, SERIES_UID), tmp_path / "case.seg.dcm")
