"""A mask on a DICOM series' own grid as one DICOM Segmentation object (highdicom), for PACS and viewers.

The mask arrives in the ITK voxel order the series was read in (``read_dicom_series``): axis 0 is the
DICOM column index, axis 1 the row index, axis 2 the slice index along ITK's slice direction. Each ITK
slice is matched to the source file at its position along that direction (ImagePositionPatient, never
file name or InstanceNumber), and each SEG frame is the mask on that file's own pixels, so the SEG lands
on the scan whatever order the files are stored in and however the direction cosines point.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from atriumseg._version import __version__
from atriumseg.pipeline.io.geometry import ItkGeometry
from atriumseg.pipeline.io.writing import refuse_existing, write_atomically

log = logging.getLogger(__name__)

LEFT_ATRIUM = hd.sr.CodedConcept("82471001", "SCT", "Left atrium")
ANATOMICAL_STRUCTURE = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
SERIES_NUMBER = 1000  # viewers list series by number; a high one puts the SEG after the scanner's series
SLICE_TOLERANCE = 0.1  # of the slice spacing: how far a file may sit from the ITK slice it is matched to, ...
GAP_TOLERANCE = 0.01  # ... plus this much per slice from the first: the reader lets each gap differ by 1%
COSINE_TOLERANCE = 1e-3  # direction cosines of a file against the mask's grid (DS text keeps ~6 digits)
# Type 2 attributes (present, possibly empty) that highdicom reads from the first source and that
# anonymised series sometimes drop altogether; they are added empty so the SEG can still be built.
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
           "StudyDate", "StudyTime")
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
             "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns")


def read_sources(files: Sequence[Path]) -> list[Dataset]:
    """The datasets of a series' files without their pixels, checked for what a SEG needs of them."""
    datasets = []
    for name in files:
        dataset = pydicom.dcmread(name, stop_before_pixels=True)
        missing = [keyword for keyword in _REQUIRED if dataset.get(keyword) in (None, "")]
        if missing:
            raise ValueError(
                f"{name}: lacks {', '.join(missing)}, which a DICOM SEG needs to be placed on the scan; "
                "write NIfTI for this series instead"
            )
        for keyword in _TYPE_2:
            if keyword not in dataset:
                setattr(dataset, keyword, "")
        datasets.append(dataset)
    return datasets


def slice_indices(datasets: Sequence[Dataset], geometry: ItkGeometry, shape: tuple[int, int, int]) -> list[int]:
    """The ITK slice index of each dataset: its rank by ImagePositionPatient along the slice normal.

    Every dataset must lie on the grid the mask was made on: same pixel count, spacing and direction
    cosines, near its slice (within the drift of the gaps the reader accepts); every slice must be matched
    exactly once.
    """
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(geometry.spacing, dtype=np.float64)
    origin = np.asarray(geometry.origin, dtype=np.float64)
    names, offsets = [], []
    for dataset in datasets:
        name = dataset.filename or dataset.SOPInstanceUID
        cosines = np.asarray(dataset.ImageOrientationPatient, dtype=np.float64)
        if not np.allclose(cosines, np.concatenate([direction[:, 0], direction[:, 1]]), atol=COSINE_TOLERANCE):
            raise ValueError(
                f"{name}: ImageOrientationPatient {cosines.tolist()} differs from the mask's grid "
                f"(row {direction[:, 0].tolist()}, column {direction[:, 1].tolist()}); "
                "pass the files of the series the mask was segmented from"
            )
        pixel_spacing = np.asarray(dataset.PixelSpacing, dtype=np.float64)
        if (int(dataset.Columns), int(dataset.Rows)) != shape[:2] or not np.allclose(
            pixel_spacing, spacing[[1, 0]], rtol=1e-4
        ):
            raise ValueError(
                f"{name}: {dataset.Columns} columns x {dataset.Rows} rows with PixelSpacing "
                f"{pixel_spacing[0]:g}\\{pixel_spacing[1]:g} mm differ from the mask's {shape[0]} x {shape[1]} "
                f"voxels with spacing {spacing[1]:g}\\{spacing[0]:g} mm; "
                "pass the files of the series the mask was segmented from"
            )
        names.append(name)
        offsets.append(float(np.dot(np.asarray(dataset.ImagePositionPatient, dtype=np.float64) - origin,
                                    direction[:, 2])))
    order = sorted(range(len(offsets)), key=offsets.__getitem__)
    for before, after in pairwise(order):
        if offsets[after] - offsets[before] < 0.5 * spacing[2]:
            raise ValueError(f"{names[after]} and {names[before]}: both lie on one slice; pass one file per slice "
                             "position")
    if len(offsets) != shape[2]:
        raise ValueError(f"{len(offsets)} source files for the mask's {shape[2]} slices; pass every file of the "
                         "series (and only those)")
    indices = [0] * len(offsets)
    for k, i in enumerate(order):
        if abs(offsets[i] / spacing[2] - k) > SLICE_TOLERANCE + GAP_TOLERANCE * k or k >= shape[2]:
            raise ValueError(
                f"{names[i]}: lies {offsets[i]:.3f} mm along the slice normal, not on slice {k} of the mask's "
                f"{shape[2]} slices {spacing[2]:g} mm apart; pass the files of the series the mask was segmented from"
            )
        indices[i] = k
    return indices


def segmentation(mask_xyz: np.ndarray, geometry: ItkGeometry, files: Sequence[Path]) -> hd.seg.Segmentation:
    """A binary "Left atrium" SEG of ``mask_xyz > 0`` (ITK (x, y, z) order, ``geometry``) on the series of ``files``.

    ``files`` are every file of the series, in any order.

    Patient, study and frame of reference come from the sources; the SEG gets new series and instance
    UIDs, references every source file, and leaves empty frames out (all are kept when the mask is empty).
    """
    mask = np.asarray(mask_xyz) > 0
    if mask.ndim != 3:
        raise ValueError(f"mask of shape {mask.shape}: expected a 3D (x, y, z) array on the series' grid")
    sources = read_sources(files)
    by_slice = dict(zip(slice_indices(sources, geometry, mask.shape), sources, strict=True))
    sources = [by_slice[k] for k in range(mask.shape[2])]
    frames = np.ascontiguousarray(mask.transpose(2, 1, 0), dtype=np.uint8)  # (slices, rows, columns), as ``sources``
    algorithm = hd.AlgorithmIdentificationSequence(
        name="atriumseg", family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Left atrium",
        segmented_property_category=ANATOMICAL_STRUCTURE,
        segmented_property_type=LEFT_ATRIUM,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="atriumseg",
        manufacturer_model_name="atriumseg",
        software_versions=__version__,
        device_serial_number="1",  # Type 1 in the SEG's equipment module; software has none
        series_description="atriumseg left atrium",
        content_description=f"Left atrium segmented by atriumseg {__version__}",
        omit_empty_frames=bool(frames.any()),  # a SEG needs one frame: an empty mask keeps them all
    )


def write_dicom_seg(
    mask_xyz: np.ndarray, geometry: ItkGeometry, files: Sequence[Path], path: Path, overwrite: bool = False
) -> Path:
    """Write the SEG of :func:`segmentation` to ``path`` atomically; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    refuse_existing(path, overwrite)
    seg = segmentation(mask_xyz, geometry, files)
    log.debug("%s: DICOM SEG of %d frames", path, int(seg.NumberOfFrames))
    return write_atomically(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True), overwrite)
