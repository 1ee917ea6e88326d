"""The slice plane is anatomical: the same anatomy stored under different correct headers gives the same mask,
and a declared header fix makes a mislabelled file look like its correctly labelled twin.

The stand-in here reads the next slice's channel, so its mask moves one slice along the plane's anatomical axis
(sagittal: towards the left): a frame or slice order read from the file rather than the anatomy moves it elsewhere.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from helpers import STANDIN_CARD, standin_network
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from atriumseg.api import segment
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (46, 44, 38)


@pytest.fixture(scope="module")
def shifted() -> Segmenter:
    """The stand-in reading the next sagittal slice: its mask is the bright anatomy moved one slice to the left."""
    return Segmenter(standin_network(neighbour=1), STANDIN_CARD, device="cpu")


def _restore(data: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """(voxels, affine) of the RAS-stored synthetic case re-stored with axes along ``codes``."""
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(codes))
    return apply_orientation(data, transform), transform


@pytest.mark.parametrize("codes", ["LPS", "ASL", "PIR", "SLA"])
def test_same_anatomy_under_two_correct_headers_gives_the_same_mask(segmenter: Segmenter, shifted: Segmenter,
                                                                     codes: str) -> None:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS"), seed=77)
    stored, transform = _restore(case.image, codes)
    affine = case.affine @ inv_ornt_aff(transform, SHAPE)
    assert nib.aff2axcodes(affine) == tuple(codes)
    in_place = np.asanyarray(segment(nib.Nifti1Image(case.image, case.affine), segmenter).dataobj)
    mask_ras = np.asanyarray(segment(nib.Nifti1Image(case.image, case.affine), shifted).dataobj)
    mask_other = np.asanyarray(segment(nib.Nifti1Image(stored, affine), shifted).dataobj)
    assert mask_ras.sum() > 0 and np.array_equal(mask_ras[:-1], in_place[1:])  # one slice (R->L axis) to the left
    back, _ = _restore(mask_ras, codes)
    assert np.array_equal(back, mask_other)


def test_declared_orientation_fixes_a_lying_header_and_keeps_the_file_header(shifted: Segmenter) -> None:
    """Voxels stored along (A, S, L) under a header claiming RAS, as in the MSD Task02 release."""
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS"), seed=78)
    stored, transform = _restore(case.image, "ASL")
    true_affine = case.affine @ inv_ornt_aff(transform, SHAPE)
    lying_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    lying_affine[:3, 3] = true_affine[:3, 3]
    lying = nib.Nifti1Image(stored, lying_affine)
    fixed = segment(lying, shifted, assume_orientation="ASL")
    truthful = segment(nib.Nifti1Image(stored, true_affine), shifted)
    believed = segment(lying, shifted)  # the lie taken at its word slices along the stored A axis
    assert np.array_equal(np.asanyarray(fixed.dataobj), np.asanyarray(truthful.dataobj))
    assert not np.array_equal(np.asanyarray(fixed.dataobj), np.asanyarray(believed.dataobj))
    assert np.allclose(fixed.affine, lying_affine)
