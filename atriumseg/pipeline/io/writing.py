"""Writing outputs atomically (a temporary file in the destination folder, then a rename) and never
over an existing file unless asked."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import SimpleITK as sitk
from isal import igzip


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_nifti(image: nib.Nifti1Image, path: Path, gzip: bool) -> None:
    """Save a NIfTI image; with ``gzip`` deflated by ISA-L, several times faster than nibabel's zlib."""
    if gzip:
        Path(path).write_bytes(igzip.compress(image.to_bytes(), compresslevel=1))
    else:
        nib.save(image, path)


def write_image(image: nib.Nifti1Image | sitk.Image, path: Path, overwrite: bool = False) -> Path:
    """Write a mask atomically; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if isinstance(image, nib.Nifti1Image):
        return write_atomically(path, lambda tmp: save_nifti(image, tmp, gzip=path.name.lower().endswith(".gz")))
    return write_atomically(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True))
