"""What image files are called: the suffixes read and written, and the one rule that names a case.

A case is named by its file name minus the image suffix, dots kept (``exam_T1_3.0mm.nii.gz`` ->
``exam_T1_3.0mm``), or by its folder for a DICOM series; every output name appends to it. Inference,
batch runs, evaluation and training all name cases with :func:`case_name`. Torch-free, numpy-free.
"""

from __future__ import annotations

from pathlib import Path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES
SEG_SUFFIX = ".seg.dcm"  # a DICOM Segmentation of a series (:mod:`.dicom_seg`)
_SINGLE_FILE_SUFFIX = {".mhd": ".mha", ".nhdr": ".nrrd"}  # header + data pairs are written as one file


def is_nifti(path: Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def image_suffix(path: Path) -> str:
    """The image suffix ``path``'s name ends with (the longest, any case: ``.nii.gz`` before ``.gz``), else ''."""
    name = Path(path).name.lower()
    return next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def case_name(path: Path) -> str:
    """The case name CASE: the file name minus its image suffix (``exam_T1_3.0mm.nii.gz`` -> ``exam_T1_3.0mm``,
    never ``Path.stem``); a DICOM folder -> its folder name. Every output name appends to it."""
    path = Path(path)
    if path.is_dir():
        return path.name
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def mask_suffix(path: Path, fmt: str = "nii.gz") -> str:
    """The file suffix of the mask of ``path``: ``.nii.gz``, or the input's own format with ``fmt='same'``
    (a DICOM folder gives ``.nii.gz``; ``.mhd`` and ``.nhdr`` give their single-file forms)."""
    path = Path(path)
    if fmt not in ("same", "nii.gz"):
        raise ValueError(f"output format must be 'nii.gz' or 'same', got {fmt!r}")
    if fmt == "nii.gz" or path.is_dir():
        return ".nii.gz"
    suffix = image_suffix(path)
    return _SINGLE_FILE_SUFFIX.get(suffix, suffix) or ".nii.gz"
