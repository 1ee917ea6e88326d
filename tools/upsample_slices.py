"""Copy LGE cases with their slices interpolated back to the released 0.625 mm (from shared/'s 1.25 mm).

Images are interpolated linearly between neighbouring slices and labels take the nearest slice; the
affine keeps the first slice's position and halves the slice spacing, so world coordinates are exact.
It checks that a model does not depend on the slice spacing it was trained at.

    python tools/upsample_slices.py ../shared/data/LA2018_LGE OUT CASE...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np


def upsample(array: np.ndarray, linear: bool) -> np.ndarray:
    """Insert a slice between every two along the last axis: their mean (linear) or the first (nearest)."""
    between = (array[..., :-1] + array[..., 1:]) / 2 if linear else array[..., :-1]
    out = np.empty(array.shape[:-1] + (2 * array.shape[-1] - 1,), dtype=np.float32 if linear else array.dtype)
    out[..., 0::2], out[..., 1::2] = array, between
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("cases", nargs="+")
    args = parser.parse_args()
    for kind, linear in (("imagesTr", True), ("labelsTr", False)):
        (args.output / kind).mkdir(parents=True, exist_ok=True)
        for case in args.cases:
            image = nib.load(args.dataset / kind / f"{case}.nii.gz")
            affine = image.affine.copy()
            affine[:3, 2] /= 2
            data = np.asanyarray(image.dataobj).astype(np.float32 if linear else np.uint8)
            nib.save(nib.Nifti1Image(upsample(data, linear), affine), args.output / kind / f"{case}.nii.gz")


if __name__ == "__main__":
    main()
