"""The public Python entry point: segment one image, whatever object it arrives in."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from monai.data import MetaTensor

from atriumseg.geometry import validate_axcodes
from atriumseg.pipeline.analysis.body_size import BodySize, body_size_index
from atriumseg.pipeline.analysis.measure import Measurements
from atriumseg.pipeline.analysis.measure import measure as measure_array
from atriumseg.pipeline.analysis.mesh import Mesh
from atriumseg.pipeline.analysis.mesh import mesh as mesh_array
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.geometry import ItkGeometry
from atriumseg.pipeline.io.readers import SimpleITKReader
from atriumseg.pipeline.io.volumes import Volume, check_volume, checked_volume, nifti_volume, read_image
from atriumseg.pipeline.io.writing import refuse_existing, write_image

log = logging.getLogger(__name__)

ImageLike = Union[str, Path, nib.Nifti1Image, sitk.Image, MetaTensor]
ModelLike = Union[None, str, Path, Segmenter]


def as_volume(image: ImageLike, name: str = "image", series_uid: str | None = None) -> Volume:
    """Wrap a path (``series_uid``: one series of a DICOM folder holding several), nibabel image or SimpleITK image
    as a :class:`Volume`, read and checked as ``atriumseg segment`` reads the same file (MetaTensors go through
    unchanged)."""
    if isinstance(image, (str, Path)):
        return read_image(Path(image), series_uid)
    if isinstance(image, nib.Nifti1Image):
        return nifti_volume(image, name, name)
    if isinstance(image, sitk.Image):
        return checked_volume(SimpleITKReader().tensor(image), ItkGeometry.of(image), name, name)
    raise TypeError(
        f"cannot segment a {type(image).__name__}; pass a path, nibabel image, SimpleITK image or MetaTensor"
    )


def as_segmenter(model: ModelLike, device: str = "auto") -> Segmenter:
    """A ready :class:`Segmenter`: the given one, one loaded from a model folder, or the built-in default."""
    return model if isinstance(model, Segmenter) else Segmenter.from_path(model, device=device)


def segment(
    image: ImageLike,
    model: ModelLike = None,
    *,
    device: str = "auto",
    assume_orientation: str | None = None,
    tta: bool = False,
    output: str | Path | None = None,
    overwrite: bool = False,
    series_uid: str | None = None,
) -> nib.Nifti1Image | sitk.Image | MetaTensor:
    """Segment the left atrium of one 3D image and return a uint8 mask with the input's geometry.

    ``image`` may be a path (NIfTI, NRRD, MHA/MHD, DICOM series folder), a nibabel image, a
    SimpleITK image or a channel-first MONAI MetaTensor ``(1, X, Y, Z)``; the mask comes back as
    the same kind of object (a path gives a nibabel image for NIfTI, a SimpleITK image otherwise).
    ``model`` is a model folder or a :class:`Segmenter` (build one once to segment many images);
    None uses the built-in default model. ``assume_orientation`` declares the true axis codes of
    a mislabelled header; ``tta`` averages test-time augmentations. With ``output`` the mask is
    also written there, atomically. ``series_uid`` names the series of a DICOM folder that holds several (the
    command line makes each its own case). Every argument is checked before any work.
    """
    if assume_orientation is not None:
        assume_orientation = validate_axcodes(assume_orientation)
    if output is not None:
        if isinstance(image, MetaTensor):
            raise ValueError("output= needs a path, nibabel or SimpleITK input, whose header the file can copy")
        refuse_existing(Path(output), overwrite)  # before the work
    segmenter = as_segmenter(model, device)
    if isinstance(image, MetaTensor):
        tensor = image if image.ndim == 4 else image[None]
        check_volume(tensor, "image")
        mask = segmenter(tensor, assume_orientation=assume_orientation, tta=tta)
        return mask if image.ndim == 4 else mask[0]
    volume = as_volume(image, series_uid=series_uid)
    mask = segmenter(volume.tensor, assume_orientation=assume_orientation, tta=tta)
    result = volume.geometry.image(mask[0].numpy())
    if output is not None:
        write_image(result, Path(output), overwrite=overwrite)
    return result


def _mask_and_affine(mask: ImageLike | np.ndarray, affine: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(mask, np.ndarray):
        if affine is None:
            raise ValueError("a numpy mask needs its 4x4 voxel-to-RAS affine: measure(mask, affine)")
        return mask, np.asarray(affine, dtype=np.float64)
    tensor = mask if isinstance(mask, MetaTensor) else as_volume(mask, "mask").tensor
    array = tensor.as_tensor().numpy()
    return (array[0] if array.ndim == 4 else array), np.asarray(tensor.affine, dtype=np.float64)


def measure(
    mask: ImageLike | np.ndarray,
    affine: np.ndarray | None = None,
    height_cm: float | None = None,
    weight_kg: float | None = None,
) -> Measurements:
    """Volume (mL), surface area (mm²), sphericity, principal axis lengths (mm) and RAS centroid (mm) of a mask.

    ``mask`` is anything :func:`segment` accepts or returns, or a numpy array with its ``affine``;
    all figures are in world units, so they do not depend on the voxel grid or orientation. With the
    patient's ``height_cm`` and ``weight_kg`` the result also holds ``bsa_m2`` and ``lavi_ml_m2``; they
    stay NaN (with a logged reason) when either is missing or implausible, and ``lavi_ml_m2`` for an empty mask.
    """
    result = measure_array(*_mask_and_affine(mask, affine))
    if height_cm is None and weight_kg is None:
        return result
    index = body_size_index(result.volume_ml, BodySize(height_cm, weight_kg, "measure(height_cm=, weight_kg=)"))
    if index.reason is not None:
        log.warning("no BSA or LAVI: %s", index.reason)
        return result
    if index.lavi_ml_m2 is None:
        log.warning("no LAVI: the mask is empty")
        return replace(result, bsa_m2=index.bsa_m2)
    return replace(result, bsa_m2=index.bsa_m2, lavi_ml_m2=index.lavi_ml_m2)


def mesh(mask: ImageLike | np.ndarray, affine: np.ndarray | None = None, frame: str = "RAS") -> Mesh:
    """The mask's smoothed surface in world millimetres (``frame`` 'RAS' or 'LPS'); save it with ``save_mesh``."""
    array, affine = _mask_and_affine(mask, affine)
    return mesh_array(array, affine, frame=frame)
