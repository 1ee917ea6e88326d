"""A MONAI image reader backed by SimpleITK, for NRRD, MHA/MHD and DICOM series folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys

SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def sitk_affine_ras(image: sitk.Image) -> np.ndarray:
    """The 4x4 voxel-to-RAS affine of a 3D SimpleITK image (ITK works in LPS)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ affine


def read_dicom_series(folder: Path, series_uid: str | None = None) -> sitk.Image:
    """Read one DICOM series from a folder (the first, or the one with ``series_uid``)."""
    uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not uids:
        raise ValueError(f"{folder}: no DICOM series found in this folder")
    uid = series_uid or uids[0]
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


class SimpleITKReader(ImageReader):
    """Read NRRD, MHA/MHD or a DICOM series folder into a RAS MetaTensor through MONAI's ``LoadImage``.

    The array is returned in ITK index order (x, y, z), matching the affine.
    """

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        paths = [Path(f) for f in (filename if isinstance(filename, (list, tuple)) else [filename])]
        return all(p.is_dir() or p.suffix.lower() in SITK_SUFFIXES for p in paths)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> sitk.Image:
        path = Path(data[0] if isinstance(data, (list, tuple)) else data)
        if path.is_dir():
            return read_dicom_series(path)
        return sitk.ReadImage(str(path))

    def get_data(self, img: sitk.Image) -> tuple[np.ndarray, dict]:
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"image has {img.GetNumberOfComponentsPerPixel()} components per voxel; expected 1")
        array = sitk.GetArrayFromImage(img)
        array = np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]))
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
