"""Does a model still find the atrium when the scan sits in a corner of a wider field? The bundled sample (or any
image and label) placed in a corner of a zero field FACTOR times as wide in-plane, segmented by each model:

    python tools/off_centre.py --models atriumseg/models/default candidates/builtin-0.6.0 --factors 1 2 3

Zeros are the hard case for anything that reads the centre of the field (the cap at the centre's percentile).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

import atriumseg
from atriumseg.demo import sample_paths
from atriumseg.pipeline.analysis.metrics import mask_dice
from atriumseg.pipeline.inference.segmenter import Segmenter


def in_corner(image: nib.Nifti1Image, factor: int) -> nib.Nifti1Image:
    """``image`` in the first corner of a zero field ``factor`` times as wide along its first two axes (same affine:
    the scan keeps its world position)."""
    data = np.asanyarray(image.dataobj).astype(np.float32)
    field = np.zeros((data.shape[0] * factor, data.shape[1] * factor, *data.shape[2:]), np.float32)
    field[:data.shape[0], :data.shape[1]] = data
    return nib.Nifti1Image(field, image.affine, image.header)


def corner_dice(segmenter: Segmenter, image: Path, label: Path, factor: int, folder: Path) -> float:
    """Dice of ``segmenter``'s mask of ``image`` placed :func:`in_corner` against the label placed alike."""
    path = folder / f"corner{factor}.nii.gz"
    nib.save(in_corner(nib.load(image), factor), path)
    truth = np.asanyarray(in_corner(nib.load(label), factor).dataobj) > 0
    mask = np.asanyarray(atriumseg.segment(path, segmenter).dataobj) > 0
    return mask_dice(mask, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="model or ensemble folders")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 3], help="field widths, in scan widths")
    parser.add_argument("--image", type=Path, help="an image (default: the bundled sample)")
    parser.add_argument("--label", type=Path, help="its reference label (default: the bundled sample's)")
    args = parser.parse_args()
    image, label = (args.image, args.label) if args.image else sample_paths()
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            segmenter = Segmenter.from_path(model, device="cpu")
            scores = [corner_dice(segmenter, image, label, factor, Path(folder)) for factor in args.factors]
            print(f"{model}: " + ", ".join(f"{f}x {d:.4f}" for f, d in zip(args.factors, scores, strict=True)))


if __name__ == "__main__":
    main()
