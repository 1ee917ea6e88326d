"""Correcting a header that lies about anatomy: give the voxel axes the codes the user declares."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from atriumseg.geometry import affine_with_axcodes, validate_axcodes


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
