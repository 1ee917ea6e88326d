"""The geometry an output copies from its input, and voxel sizes and volumes from an affine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class NiftiGeometry:
    """The header of a NIfTI input; masks reuse it verbatim."""

    header: nib.Nifti1Header
    affine: np.ndarray

    def image(self, array: np.ndarray) -> nib.Nifti1Image:
        """A NIfTI image of ``array`` with this header's geometry and a uint8/float type."""
        header = self.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1.0, 0.0)
        image = nib.Nifti1Image(array, self.affine, header)
        image.set_qform(self.header.get_qform(), int(self.header["qform_code"]))
        image.set_sform(self.header.get_sform(), int(self.header["sform_code"]))
        return image


@dataclass(frozen=True)
class ItkGeometry:
    """Origin, spacing and direction of an ITK-read input; masks copy them."""

    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> ItkGeometry:
        return cls(image.GetOrigin(), image.GetSpacing(), image.GetDirection())

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of ``array`` (x, y, z order) with this geometry."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image


Geometry = Union[NiftiGeometry, ItkGeometry]


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm from a 4x4 affine (rotations and flips allowed)."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def voxel_volume_ml(affine: np.ndarray) -> float:
    """The volume of one voxel in mL: ``|det|`` of the affine's 3x3 part, exact for sheared grids too."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
