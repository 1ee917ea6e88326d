"""Reading any supported 3D image into a :class:`Volume`: a MetaTensor plus the geometry its outputs copy.

NIfTI goes through MONAI's ``NibabelReader`` and keeps its own header; NRRD, MHA/MHD and DICOM
series go through :class:`SimpleITKReader` and keep origin, spacing and direction. What cannot be
segmented (2D, 4D, empty, corrupt, too small) is refused with an :class:`ImageReadError` naming the
input and the reason.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import torch
from monai.data import MetaTensor

from atriumseg.pipeline.io.geometry import Geometry, ItkGeometry, NiftiGeometry
from atriumseg.pipeline.io.readers import SITK_SUFFIXES, NiftiReader, SimpleITKReader

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES
MIN_SIZE = 16  # voxels along at least two axes: smaller volumes hold no segmentable atrium
_SINGLE_FILE_SUFFIX = {".mhd": ".mha", ".nhdr": ".nrrd"}


class ImageReadError(ValueError):
    """An input that cannot be segmented; the message names the input and the reason."""


@dataclass(frozen=True)
class Volume:
    """A 3D image as a channel-first MetaTensor ``(1, X, Y, Z)`` plus the geometry its outputs copy."""

    tensor: MetaTensor
    geometry: Geometry
    name: str


def is_nifti(path: Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def case_name(path: Path) -> str:
    """``DIR/name.nii.gz`` -> ``name``; a DICOM folder -> its folder name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_path(path: Path, out_dir: Path, fmt: str = "nii.gz") -> Path:
    """Where the mask of ``path`` goes: ``out_dir/name.nii.gz``, or the input's own format with ``fmt='same'``."""
    path = Path(path)
    if fmt == "same" and not path.is_dir():
        suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
        suffix = _SINGLE_FILE_SUFFIX.get(suffix, suffix)
    elif fmt in ("same", "nii.gz"):
        suffix = ".nii.gz"
    else:
        raise ValueError(f"output format must be 'nii.gz' or 'same', got {fmt!r}")
    return Path(out_dir) / f"{case_name(path)}{suffix}"


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


def read_image(path: Path, series_uid: str | None = None, name: str | None = None) -> Volume:
    """Read a NIfTI, NRRD, MHA/MHD file or a DICOM series folder (one series, or ``series_uid``) as a 3D volume."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    if not (path.is_dir() or str(path).lower().endswith(IMAGE_SUFFIXES)):
        raise ImageReadError(
            f"{path}: not a supported image (expected {', '.join(IMAGE_SUFFIXES)} or a DICOM series folder)"
        )
    try:
        if is_nifti(path):
            nifti = NiftiReader()
            loaded = nifti.read(path)
            tensor = nifti.tensor(loaded)
            geometry: Geometry = NiftiGeometry(loaded.header.copy(), loaded.affine.copy())
        else:
            reader = SimpleITKReader(series_uid)
            itk_image = reader.read(path)
            tensor = reader.tensor(itk_image)
            geometry = ItkGeometry.of(itk_image)
    except ImageReadError:
        raise
    except (OSError, EOFError, RuntimeError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ImageReadError(f"{path}: unreadable or corrupt image ({reason})") from err
    check_volume(tensor, str(path))
    return Volume(tensor=tensor, geometry=geometry, name=name or case_name(path))
