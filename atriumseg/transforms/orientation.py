"""Correcting a header that lies about anatomy: give the voxel axes the codes the user declares."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

AXIS_UNIT = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def validate_axcodes(codes: str) -> str:
    """Upper-case axis codes such as ``'ASL'``, or a ValueError that says what is accepted."""
    codes = codes.upper()
    if len(codes) != 3 or any(sum(c in pair for c in codes) != 1 for pair in ("LR", "AP", "SI")):
        raise ValueError(
            f"orientation {codes!r} is not three axis codes naming each of L/R, A/P and S/I once "
            "(for example 'RAS', 'LPS' or 'ASL')"
        )
    return codes


def affine_with_axcodes(affine: np.ndarray, codes: str) -> np.ndarray:
    """``affine`` with its voxel axes pointing along ``codes`` (RAS world), same voxel sizes and origin."""
    codes = validate_axcodes(codes)
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    fixed = np.eye(4)
    fixed[:3, :3] = np.stack([np.asarray(AXIS_UNIT[c], float) * s for c, s in zip(codes, spacing)], axis=1)
    fixed[:3, 3] = affine[:3, 3]
    return fixed


class AssumeOrientation(Transform):
    """Replace a channel-first MetaTensor's affine so its axes carry the declared codes.

    For headers known to be wrong (the MSD Task02 release claims RAS for ('A', 'S', 'L') data).
    The voxels are untouched (and not copied); only the anatomical labels of the axes change.
    """

    def __init__(self, axcodes: str) -> None:
        self.axcodes = validate_axcodes(axcodes)

    def __call__(self, img: torch.Tensor) -> MetaTensor:
        img = img if isinstance(img, MetaTensor) else MetaTensor(img)
        out = MetaTensor(img.as_tensor(), meta=dict(img.meta), applied_operations=list(img.applied_operations))
        out.affine = torch.as_tensor(affine_with_axcodes(img.affine.numpy(), self.axcodes), dtype=torch.float64)
        return out


class AssumeOrientationd(MapTransform):
    """Dictionary wrapper of :class:`AssumeOrientation`."""

    def __init__(self, keys: Sequence[Hashable], axcodes: str) -> None:
        super().__init__(keys)
        self.transform = AssumeOrientation(axcodes)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
