"""Reading any supported 3D image into a :class:`Volume`: a MetaTensor plus the geometry its outputs copy.

NIfTI goes through MONAI's ``NibabelReader`` and keeps its own header; NRRD, MHA/MHD and DICOM
series go through :class:`SimpleITKReader` and keep origin, spacing and direction. What cannot be
segmented (2D, 4D, empty, corrupt, too small, not a regular file, unusable voxel sizes, more voxels than
:data:`~atriumseg.pipeline.io.geometry.MAX_VOXELS` as stored or once resampled) is refused with an
:class:`ImageReadError` naming the input and the reason.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import correct_nifti_header_if_necessary
from monai.utils import ImageMetaKey

from atriumseg.geometry import voxel_spacing
from atriumseg.pipeline.io.geometry import (
    MAX_VOXELS,
    Geometry,
    GridError,
    ItkGeometry,
    NiftiGeometry,
    check_grid,
    resampled_shape,
)
from atriumseg.pipeline.io.names import IMAGE_SUFFIXES, case_name, is_nifti
from atriumseg.pipeline.io.readers import NiftiReader, SimpleITKReader, check_nifti_header

MIN_SIZE = 16  # voxels along at least two axes: smaller volumes hold no segmentable atrium


class ImageReadError(ValueError):
    """An input that cannot be segmented; the message names the input and the reason."""


@dataclass(frozen=True)
class Volume:
    """A 3D image as a channel-first MetaTensor ``(1, X, Y, Z)`` plus the geometry its outputs copy."""

    tensor: MetaTensor
    geometry: Geometry
    name: str


def repaired_header(volume: Volume) -> str:
    """A quality flag when the model read another grid than the one the outputs keep (else ""): a NIfTI whose
    affine's voxel sizes disagree with pixdim is read with the form (qform or sform) that agrees (MONAI's repair),
    and volumes are measured on that grid, while the outputs keep the header as stored, so a viewer that trusts the
    stored affine sees other sizes."""
    stored = getattr(volume.geometry, "affine", None)
    used = volume.tensor.affine.numpy()
    if stored is None or np.allclose(stored, used, atol=1e-4):
        return ""
    sizes = " x ".join(f"{v:.3g}" for v in voxel_spacing(stored))
    read = " x ".join(f"{v:.3g}" for v in voxel_spacing(used))
    return f"header: affine voxels {sizes} mm disagree with pixdim; read and measured as MONAI repairs it, {read} mm"


def check_volume(tensor: torch.Tensor, name: str) -> None:
    """Refuse what the model cannot segment, with the reason in plain words."""
    spatial = tuple(tensor.shape[1:])
    if len(spatial) < 3 or (len(spatial) == 3 and 1 in spatial):
        raise ImageReadError(f"{name}: 2D image of shape {spatial}; atriumseg needs a 3D volume")
    if len(spatial) > 3:
        raise ImageReadError(f"{name}: image with {len(spatial)} spatial dimensions {spatial}; expected 3")
    if tensor.shape[0] != 1:
        raise ImageReadError(
            f"{name}: 4D image holding {tensor.shape[0]} volumes; save the volume to segment as a 3D image"
        )
    if tensor.numel() == 0:
        raise ImageReadError(f"{name}: image has no voxels (shape {spatial})")
    if sorted(spatial)[1] < MIN_SIZE:
        raise ImageReadError(
            f"{name}: volume of shape {spatial} is too small; at least two axes need {MIN_SIZE} voxels"
        )
    first_slice = tensor[0].select(-1, 0)  # usually settles it without a pass over the whole volume
    if not (torch.isfinite(first_slice).any() or torch.isfinite(tensor).any()):
        raise ImageReadError(f"{name}: no finite voxel value (all NaN or infinite)")


def check_resampled_size(
    tensor: MetaTensor, affine: np.ndarray, pixdim: tuple[float, float, float], orientation: str, name: str
) -> None:
    """Refuse a volume that would hold more than :data:`MAX_VOXELS` voxels once resampled to ``pixdim`` mm in
    ``orientation`` (a model card's preprocessing), estimated before resampling, with the figures in the reason.

    ``affine`` is the one describing the anatomy (the header's, or the declared orientation's). A voxel size
    too large by a large factor (micrometres read as millimetres) is the usual cause.
    """
    shape = tuple(int(n) for n in tensor.shape[1:])
    target = resampled_shape(shape, affine, pixdim, orientation)
    count = int(np.prod(target, dtype=object))
    if count > MAX_VOXELS:
        spacing = " x ".join(f"{s:g}" for s in voxel_spacing(affine))
        raise ImageReadError(
            f"{name}: resampled to the model's voxel size this volume would hold {' x '.join(map(str, target))} = "
            f"{count:,} voxels (from {' x '.join(map(str, shape))} voxels of {spacing} mm), beyond the bound of "
            f"{MAX_VOXELS:,}; check the voxel size in its header (is it in micrometres, read as mm?)"
        )


def file_kind(mode: int) -> str:
    """What a file that is neither regular nor a folder is, from its ``st_mode``: "a FIFO (named pipe)"..."""
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def read_image(path: Path, series_uid: str | None = None, name: str | None = None) -> Volume:
    """Read a NIfTI, NRRD, MHA/MHD file or a DICOM series folder (one series, or ``series_uid``) as a 3D volume.

    Only regular files are opened (a FIFO would block the reader forever); headers are checked before any
    voxel is read.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file or folder") from None
    except OSError as err:
        raise ImageReadError(f"{path}: cannot be opened ({err.strerror})") from err
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise ImageReadError(f"{path}: {file_kind(info.st_mode)}, not an image file; give a file or a DICOM folder")
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    if not (path.is_dir() or str(path).lower().endswith(IMAGE_SUFFIXES)):
        raise ImageReadError(
            f"{path}: not a supported image (expected {', '.join(IMAGE_SUFFIXES)} or a DICOM series folder)"
        )
    try:
        if is_nifti(path):
            return _from_file(nifti_volume(NiftiReader().read_stored(path), str(path), name or case_name(path)), path)
        reader = SimpleITKReader(series_uid)
        itk_image = reader.read(path)
        tensor = reader.tensor(itk_image)
        geometry: Geometry = ItkGeometry.of(itk_image)
    except ImageReadError:
        raise
    except GridError as err:
        raise ImageReadError(f"{path}: {err}") from err
    except MemoryError:
        raise
    except Exception as err:  # nibabel, SimpleITK and pydicom raise many types on a corrupt file; each means this
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ImageReadError(f"{path}: unreadable or corrupt image ({reason})") from err
    return _from_file(checked_volume(tensor, geometry, str(path), name or case_name(path)), path)


def _from_file(volume: Volume, path: Path) -> Volume:
    """The volume, its tensor naming the file it was read from (MONAI's ``filename_or_obj``, as ``LoadImage`` sets
    it), so that a refusal further on, such as the Segmenter's size check, can say which file."""
    volume.tensor.meta[ImageMetaKey.FILENAME_OR_OBJ] = str(path)
    return volume


def nifti_volume(image: nib.Nifti1Image, label: str, name: str) -> Volume:
    """A NIfTI image (read from a file or built in memory) as :func:`read_image` reads it: the model reads it with
    MONAI's header repair, its outputs keep the header as stored; a one-volume 4D image is that volume."""
    geometry = NiftiGeometry(image.header.copy(), image.affine.copy())  # before the repair, which works in place
    reader = NiftiReader()
    reader.filenames = (label,)  # MONAI's get_data names the source in the metadata, as read() would
    try:
        check_nifti_header(image.header)
        working = type(image)(image.dataobj, image.affine, image.header)  # the same voxels; the caller's header kept
        tensor = reader.tensor(correct_nifti_header_if_necessary(working))
    except GridError as err:
        raise ImageReadError(f"{label}: {err}") from err
    return checked_volume(tensor, geometry, label, name)


def checked_volume(tensor: MetaTensor, geometry: Geometry, label: str, name: str) -> Volume:
    """A read tensor as a :class:`Volume`, once its affine, grid and shape are known to be segmentable."""
    affine = tensor.affine.numpy()
    if not np.isfinite(affine).all():
        raise ImageReadError(f"{label}: its voxel-to-world affine holds values that are not finite numbers")
    try:
        check_grid(tuple(tensor.shape[1:]), voxel_spacing(affine))
    except GridError as err:
        raise ImageReadError(f"{label}: {err}") from err
    check_volume(tensor, label)
    return Volume(tensor=tensor, geometry=geometry, name=name)
