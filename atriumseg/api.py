"""The public Python entry point: segment one image, whatever object it arrives in."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from atriumseg.pipeline.inference import Segmenter
from atriumseg.pipeline.io import ItkGeometry, NiftiGeometry, Volume, check_volume, read_image, write_image
from atriumseg.pipeline.readers import SimpleITKReader

ImageLike = Union[str, Path, nib.Nifti1Image, sitk.Image, MetaTensor]
ModelLike = Union[None, str, Path, Segmenter]


def as_volume(image: ImageLike, name: str = "image") -> Volume:
    """Wrap a path, nibabel image or SimpleITK image as a :class:`Volume` (MetaTensors go through unchanged)."""
    if isinstance(image, (str, Path)):
        return read_image(Path(image))
    if isinstance(image, nib.Nifti1Image):
        voxels = np.ascontiguousarray(np.asanyarray(image.dataobj), dtype=np.float32)
        tensor = MetaTensor(torch.from_numpy(voxels)[None], affine=torch.as_tensor(image.affine))
        geometry = NiftiGeometry(image.header.copy(), image.affine.copy())
    elif isinstance(image, sitk.Image):
        array, meta = SimpleITKReader().get_data(image)
        tensor = MetaTensor(torch.from_numpy(array)[None], affine=torch.as_tensor(meta["affine"]), meta=meta)
        geometry = ItkGeometry.of(image)
    else:
        raise TypeError(
            f"cannot segment a {type(image).__name__}; pass a path, nibabel image, SimpleITK image or MetaTensor"
        )
    check_volume(tensor, name)
    return Volume(tensor=tensor, geometry=geometry, name=name)


def as_segmenter(model: ModelLike, device: str = "auto") -> Segmenter:
    """A ready :class:`Segmenter`: the given one, one loaded from a model folder, or the built-in default."""
    return model if isinstance(model, Segmenter) else Segmenter.from_path(model, device=device)


def segment(
    image: ImageLike,
    model: ModelLike = None,
    *,
    device: str = "auto",
    assume_orientation: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
) -> nib.Nifti1Image | sitk.Image | MetaTensor:
    """Segment the left atrium of one 3D image and return a uint8 mask with the input's geometry.

    ``image`` may be a path (NIfTI, NRRD, MHA/MHD, DICOM series folder), a nibabel image, a
    SimpleITK image or a channel-first MONAI MetaTensor ``(1, X, Y, Z)``; the mask comes back as
    the same kind of object (a path gives a nibabel image for NIfTI, a SimpleITK image otherwise).
    ``model`` is a model folder or a :class:`Segmenter` (build one once to segment many images);
    None uses the built-in default model. ``assume_orientation`` declares the true axis codes of
    a mislabelled header. With ``output`` the mask is also written there, atomically.
    """
    segmenter = as_segmenter(model, device)
    if isinstance(image, MetaTensor):
        tensor = image if image.ndim == 4 else image[None]
        check_volume(tensor, "image")
        mask = segmenter(tensor, assume_orientation=assume_orientation)
        if output is not None:
            raise ValueError("output= needs a path, nibabel or SimpleITK input, whose header the file can copy")
        return mask if image.ndim == 4 else mask[0]
    volume = as_volume(image)
    mask = segmenter(volume.tensor, assume_orientation=assume_orientation)
    result = volume.geometry.image(mask[0].numpy())
    if output is not None:
        write_image(result, Path(output), overwrite=overwrite)
    return result
