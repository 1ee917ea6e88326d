"""The geometry an output copies from its input, the volume of a voxel, and the size bound (voxel sizes that are
usable, at most :data:`MAX_VOXELS` voxels as stored and once resampled). Voxel sizes come from the bottom-layer
:func:`atriumseg.geometry.voxel_spacing`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from atriumseg.geometry import voxel_spacing


@dataclass(frozen=True)
class NiftiGeometry:
    """The header of a NIfTI input; masks reuse it verbatim."""

    header: nib.Nifti1Header
    affine: np.ndarray

    def image(self, array: np.ndarray) -> nib.Nifti1Image:
        """A NIfTI image of ``array`` with this header's geometry and a uint8/float type; what describes the
        input's intensities (display window, intent, description) is not the mask's, so it is cleared (a
        window of 0-2000 kept on a 0/1 mask shows it black)."""
        header = self.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"] = header["cal_max"] = 0.0  # 0 and 0: no display window, viewers use the data's range
        header.set_intent("none")
        header["descrip"] = b""
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


def voxel_volume_ml(affine: np.ndarray) -> float:
    """The volume of one voxel in mL: ``|det|`` of the affine's 3x3 part, exact for sheared grids too."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


MAX_VOXELS = 2**28  # 268,435,456 voxels (1024 x 1024 x 256): 1 GiB per float32 copy, a run holds a few copies
_AXIS_PAIRS = ("LR", "PA", "IS")


class GridError(ValueError):
    """A voxel grid that cannot be segmented: unusable voxel sizes, or more voxels than :data:`MAX_VOXELS`."""


def check_grid(shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Refuse voxel sizes that are not positive finite numbers and grids of more than :data:`MAX_VOXELS` voxels.

    Checked on a header before the voxels are read, so an implausible header costs no memory.
    """
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        sizes = " x ".join(f"{s:g}" for s in spacing)
        raise GridError(
            f"voxel size {sizes} mm is not usable (each must be a positive number); fix the header's voxel size"
        )
    count = int(np.prod([int(n) for n in shape], dtype=object))
    if count > MAX_VOXELS:
        raise GridError(
            f"the header claims {' x '.join(str(int(n)) for n in shape)} = {count:,} voxels, beyond the bound of "
            f"{MAX_VOXELS:,}; check the header's dimensions"
        )


def resampled_shape(
    shape: tuple[int, int, int], affine: np.ndarray, pixdim: tuple[float, float, float], orientation: str
) -> tuple[int, int, int]:
    """The shape a volume takes once reoriented to ``orientation`` and resampled to ``pixdim`` mm (0 keeps an
    axis' own voxel size), estimated from its shape and affine alone, before any resampling."""
    axes = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    resampled = [1, 1, 1]
    for n, size, (world, _) in zip(shape, voxel_spacing(affine), axes, strict=True):
        j = next(k for k, code in enumerate(orientation) if code in _AXIS_PAIRS[int(world)])
        target = pixdim[j] or size
        resampled[j] = max(1, int(round(n * size / target)))
    return tuple(resampled)
