"""MONAI image readers: NIfTI through nibabel (inflated by ISA-L); NRRD, MHA/MHD, DICOM series through SimpleITK."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from isal import igzip, isal_zlib
from monai.data import ImageReader, MetaTensor, NibabelReader
from monai.data.utils import correct_nifti_header_if_necessary
from monai.utils import MetaKeys, SpaceKeys

from atriumseg.pipeline.io.geometry import GridError, check_grid
from atriumseg.pipeline.io.names import SITK_SUFFIXES

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-3  # direction cosines of one series' slices may differ by this much (0.06 degrees)
SHEAR_TOLERANCE = 0.01  # a slice may sit this far sideways per mm along the normal (0.6 degrees of gantry tilt) ...
SHEAR_MARGIN = 0.02  # ... plus this many mm (positions written with two decimals)


def sitk_affine_ras(image: sitk.Image) -> np.ndarray:
    """The 4x4 voxel-to-RAS affine of a 3D SimpleITK image (ITK works in LPS)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ affine


def as_metatensor(array: np.ndarray, meta: dict) -> MetaTensor:
    """A reader's ``get_data`` output as a channel-first MetaTensor ``(C, X, Y, Z)``, sharing the array's memory.

    C is 1 for a 3D image; a 4D array's last axis (NIfTI's volumes) becomes the channels. Voxels keep
    their type, in the machine's byte order; a view with negative strides (a flipped array in a nibabel image
    built in memory) is copied, as torch cannot share it.
    """
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if any(stride < 0 for stride in array.strides):
        array = array.copy(order="K")
    tensor = torch.from_numpy(array)
    tensor = tensor.movedim(-1, 0) if tensor.ndim == 4 else tensor[None]
    return MetaTensor(tensor, meta={**meta, MetaKeys.AFFINE: torch.as_tensor(meta[MetaKeys.AFFINE])})


class NiftiReader(NibabelReader):
    """MONAI's NibabelReader, reading one NIfTI-1 or NIfTI-2 file with its voxels loaded at once.

    ``.nii.gz`` is inflated by ISA-L (``isal``, about twice zlib's speed) straight into the array,
    which keeps the file's own (Fortran) order: no whole-volume copy is made on the way. The header
    is checked as stored, before nibabel repairs it and before any voxel is read
    (:func:`check_nifti_header`).
    """

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> nib.Nifti1Image:
        """The image with MONAI's header repair applied (an sform whose voxel sizes disagree with pixdim, such
        as a singular one, is replaced by the qform): what inference reads. Outputs copy :meth:`read_stored`'s."""
        return correct_nifti_header_if_necessary(self.read_stored(data))

    def read_stored(self, data: Sequence[Any] | Any) -> nib.Nifti1Image:
        """The image with its header exactly as stored (checked, never repaired)."""
        path = Path(data[0] if isinstance(data, (list, tuple)) else data)
        self.filenames = (str(path),)
        opener = igzip.open if path.name.lower().endswith(".gz") else open
        try:
            with opener(path, "rb") as stream:
                klass = _nifti_class(stream.read(4))
                stream.seek(0)
                check_nifti_header(klass.header_class.from_fileobj(stream, check=False))
                stream.seek(0)
                image = klass.from_file_map(klass.make_file_map({"image": stream}), mmap=False)
                return klass(np.asanyarray(image.dataobj), image.affine, image.header)
        except isal_zlib.error as err:  # corrupt deflate data; not an OSError subclass
            raise OSError(f"corrupt compressed data ({err})") from err

    def tensor(self, img: nib.Nifti1Image) -> MetaTensor:
        """The image as a channel-first MetaTensor ``(C, X, Y, Z)`` (C = 1 for a 3D image)."""
        return as_metatensor(*self.get_data(img))


def check_nifti_header(header: nib.Nifti1Header) -> None:
    """Refuse a NIfTI header that is unusable as stored: an unknown datatype code, a negative or NaN data
    offset, voxel sizes (pixdim) that are zero, negative or NaN (nibabel would silently read them as 1 mm
    or their absolute value), a qform or sform holding NaN or infinity, or more voxels than the size bound."""
    code = int(header["datatype"])
    if code not in nib.nifti1.data_type_codes.code:
        raise GridError(f"unknown datatype code {code} in the header; the file is corrupt or not NIfTI")
    offset = float(header["vox_offset"])
    if not (np.isfinite(offset) and offset >= 0):
        raise GridError(f"the header's data offset (vox_offset) is {offset:g}; it must be a non-negative number")
    dims = int(header["dim"][0])
    if not 1 <= dims <= 7:
        raise GridError(f"the header's dim[0] is {dims}, not a number of dimensions from 1 to 7")
    shape = tuple(int(n) for n in header["dim"][1 : 1 + dims])
    check_grid(shape, tuple(float(s) for s in header["pixdim"][1 : 1 + min(3, len(shape))]))
    if int(header["qform_code"]) > 0:
        quatern = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d")]
        offset = [float(header[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")]
        if not np.isfinite(quatern + offset).all():
            raise GridError("the qform (quatern_b/c/d, qoffset_x/y/z) holds a value that is not a finite number")
    if int(header["sform_code"]) > 0:
        if not all(np.isfinite(header[k]).all() for k in ("srow_x", "srow_y", "srow_z")):
            raise GridError("the sform (srow_x/y/z) holds a value that is not a finite number")


def _nifti_class(first_bytes: bytes) -> type[nib.Nifti1Image]:
    """NIfTI-1 or NIfTI-2, from the header size that opens the file (in either byte order)."""
    sizes = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
    for order in ("<", ">"):
        size = int(np.frombuffer(first_bytes, f"{order}i4")[0]) if len(first_bytes) == 4 else 0
        if size in sizes:
            return sizes[size]
    raise ValueError("not a NIfTI-1 or NIfTI-2 header")


def _slice_info(name: str) -> sitk.ImageFileReader:
    """The header of one DICOM file (or any ITK image), without its pixels."""
    info = sitk.ImageFileReader()
    info.SetFileName(name)
    info.ReadImageInformation()
    return info


# Modalities of DICOM objects that are not images to segment: a segmentation (atriumseg's own SEG beside its
# series, as Slicer wants them), structured reports, presentation states, key-object notes, RT structures.
NOT_IMAGES = frozenset({"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "REG", "DOC"})


def dicom_series(folder: Path) -> list[tuple[str, str]]:
    """(series UID, series description) of every DICOM image series directly inside ``folder``; series of objects
    that are not images (:data:`NOT_IMAGES`: a SEG written beside its series, a report) are left out."""
    series = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        try:
            info = _slice_info(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)[0])
        except RuntimeError:  # a file GDCM lists but ITK cannot open (no preamble): the case fails when read
            series.append((uid, ""))
            continue
        if info.HasMetaDataKey("0008|0060") and info.GetMetaData("0008|0060").strip().upper() in NOT_IMAGES:
            continue
        description = info.GetMetaData("0008|103e").strip() if info.HasMetaDataKey("0008|103e") else ""
        series.append((uid, description))
    return series


def series_files(folder: Path, series_uid: str) -> list[Path]:
    """The files of one DICOM series of ``folder``, in the slice order SimpleITK reads them in."""
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    if not files:
        raise ValueError(f"{folder}: no DICOM series with UID {series_uid}; list the folder's series with dicom_series")
    return [Path(f) for f in files]


def _check_slices(files: list[str], label: str) -> None:
    """Refuse a series whose slices do not share one orientation, are missing or unevenly spaced along the
    slice normal, sit sideways of it (a gantry tilt: no regular grid holds them), or add up to more voxels than
    the size bound; only headers are read."""
    if len(files) < 2:
        raise GridError(f"{label}: only {len(files)} slice; a 3D volume needs several")
    infos = [_slice_info(name) for name in files]
    directions = np.asarray([info.GetDirection() for info in infos], float)
    tilted = np.abs(directions - directions[0]).max(axis=1) > ORIENTATION_TOLERANCE
    if tilted.any():
        raise GridError(
            f"{label}: slices do not share one orientation (ImageOrientationPatient differs in {int(tilted.sum())} "
            f"of {len(files)} files); export each orientation as its own series"
        )
    width, height = infos[0].GetSize()[:2]
    check_grid((width, height, len(files)), infos[0].GetSpacing()[:2])
    normal = directions[0].reshape(3, 3)[:, 2]
    origins = np.asarray([info.GetOrigin() for info in infos], float)
    positions = origins @ normal
    sideways = np.linalg.norm((origins - origins[0]) - np.outer(positions - positions[0], normal), axis=1)
    if (sideways > SHEAR_MARGIN + SHEAR_TOLERANCE * np.abs(positions - positions[0])).any():
        raise GridError(
            f"{label}: slices are offset sideways of the slice normal (up to {sideways.max():.2f} mm: a gantry "
            "tilt or sheared stack, which no regular 3D grid holds); resample it to a regular grid first"
        )
    gaps = np.diff(np.sort(positions))
    if (gaps <= 1e-3).any():
        raise GridError(
            f"{label}: {len(files)} images at {len(files) - int((gaps <= 1e-3).sum())} slice positions (several "
            "images at one position: cine phases, echoes or repeats); export one 3D volume per series"
        )
    if gaps.max() - gaps.min() > 0.01 * max(gaps.max(), 1e-6) + 1e-3:
        raise GridError(
            f"{label}: missing or inconsistent slices (gaps between slices range from {gaps.min():.2f} "
            f"to {gaps.max():.2f} mm over {len(files)} files)"
        )


def read_dicom_series(folder: Path, series_uid: str | None = None) -> sitk.Image:
    """Read one DICOM series from a folder (the only one, or the one with ``series_uid``), checking its slices."""
    uid = series_uid
    if uid is None:  # the folder's only image series (a SEG kept beside it is not one)
        uids = [found for found, _ in dicom_series(folder)]
        if not uids:
            raise GridError("no DICOM image series found in this folder")
        if len(uids) > 1:
            raise GridError(f"holds {len(uids)} DICOM series; name one by its UID (series_uid)")
        uid = uids[0]
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))  # one scan of the folder
    if not files:
        raise GridError(f"no DICOM series with UID {uid}")
    _check_slices(files, f"series {uid}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


class SimpleITKReader(ImageReader):
    """A MONAI image reader for NRRD, MHA/MHD or a DICOM series folder; ``tensor`` gives a RAS MetaTensor.

    The array is returned in ITK index order (x, y, z), matching the affine. ``series_uid`` picks
    one series of a DICOM folder that holds several.
    """

    def __init__(self, series_uid: str | None = None) -> None:
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        paths = [Path(f) for f in (filename if isinstance(filename, (list, tuple)) else [filename])]
        return all(p.is_dir() or p.suffix.lower() in SITK_SUFFIXES for p in paths)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> sitk.Image:
        path = Path(data[0] if isinstance(data, (list, tuple)) else data)
        if path.is_dir():
            return read_dicom_series(path, self.series_uid)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()  # the header alone: refuse an implausible grid before reading voxels
        size = reader.GetSize()
        check_grid(size, reader.GetSpacing())
        if len(size) == 4 and size[3] == 1:  # one volume stored as 4D: that volume, with its 3D geometry
            extract = sitk.ExtractImageFilter()
            extract.SetSize([*size[:3], 0])
            extract.SetDirectionCollapseToStrategy(sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
            return extract.Execute(reader.Execute())
        return reader.Execute()

    def get_data(self, img: sitk.Image) -> tuple[np.ndarray, dict]:
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"image has {img.GetNumberOfComponentsPerPixel()} components per voxel; expected 1")
        array = sitk.GetArrayFromImage(img)
        array = array.transpose(tuple(range(array.ndim))[::-1])  # ITK index order (x, y, z), without a copy
        if img.GetDimension() != 3:
            affine = np.eye(4)
        else:
            affine = sitk_affine_ras(img)
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
        }
        return array, meta

    def tensor(self, img: sitk.Image) -> MetaTensor:
        """The image as a channel-first RAS MetaTensor ``(1, X, Y, Z)``."""
        return as_metatensor(*self.get_data(img))
