"""``tools/off_centre.py``: a scan placed in a corner of a zero field keeps its world position and its atrium."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from helpers import load_tool, write_nifti

from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case


def test_the_stand_in_finds_the_atrium_in_a_corner_of_a_field_three_times_as_wide(model_folder: Path,
                                                                                  tmp_path: Path) -> None:
    off_centre = load_tool("off_centre")
    shape = (40, 36, 30)
    case = synthetic_case(shape, affine=make_affine(shape, spacing=(1.2, 1.1, 1.6), axcodes="LPS"), seed=4)
    image = write_nifti(tmp_path / "image.nii.gz", case.image, case.affine)
    label = write_nifti(tmp_path / "label.nii.gz", case.label.astype(np.uint8), case.affine)
    placed = off_centre.in_corner(nib.load(image), 3)
    assert placed.shape == (120, 108, 30) and np.array_equal(placed.affine, nib.load(image).affine)
    segmenter = Segmenter.from_path(model_folder, device="cpu", precision="float32")
    alone, cornered = (off_centre.corner_dice(segmenter, image, label, factor, tmp_path) for factor in (1, 3))
    assert alone > 0.9 and cornered > 0.9  # the padding shifts the window's low percentile, not the atrium away
