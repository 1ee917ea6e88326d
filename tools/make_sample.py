"""Build the bundled demo sample from one held-out MSD Task02 case (never used for training or selection).

The voxels are cropped around the heart and stored as int16; the header is corrected to the
true ('A', 'S', 'L') orientation of the MSD Task02 release, whose headers claim RAS.

    python tools/make_sample.py ../shared/data/Task02_Heart_cropped la_023 atriumseg/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from atriumseg.geometry import affine_with_axcodes
from atriumseg.pipeline.training.dataset import load_msd_dataset

MARGIN_MM = (60.0, 60.0, 30.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("case")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    dataset = load_msd_dataset(args.dataset)
    case = dataset.select([args.case])[0]
    image, label = nib.load(case.image), nib.load(case.label)
    true_affine = affine_with_axcodes(image.affine, dataset.orientation)
    voxels = np.asanyarray(image.dataobj)
    mask = np.asanyarray(label.dataobj) > 0
    spacing = np.linalg.norm(true_affine[:3, :3], axis=0)
    nonzero = np.argwhere(mask)
    lo = np.maximum(nonzero.min(0) - np.round(np.array(MARGIN_MM) / spacing).astype(int), 0)
    hi = np.minimum(nonzero.max(0) + 1 + np.round(np.array(MARGIN_MM) / spacing).astype(int), mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    affine = true_affine.copy()
    affine[:3, 3] = true_affine[:3, :3] @ lo + true_affine[:3, 3]
    args.output.mkdir(parents=True, exist_ok=True)
    for data, dtype, name in [(voxels[crop], np.int16, "image"), (mask[crop], np.uint8, "label")]:
        out = nib.Nifti1Image(np.round(data).astype(dtype), affine)
        out.set_qform(affine, 1)
        out.set_sform(affine, 1)
        nib.save(out, args.output / f"sample_{args.case}_{name}.nii.gz")
    print(f"{args.case}: crop {tuple(hi - lo)} voxels from {mask.shape}, axcodes {nib.aff2axcodes(affine)}")


if __name__ == "__main__":
    main()
