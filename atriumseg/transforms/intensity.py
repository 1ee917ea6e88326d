"""Capping intensities at the upper percentile of the volume's centre, before the per-volume window.

A bright rim at the edge of the field (fat beside a surface coil, inflow) can set a whole volume's
upper percentile, so the window then squeezes the heart into its lower grey levels. The heart sits
near the centre of a cardiac scan's field: capping every voxel at the centre's upper percentile
keeps the window on the heart's grey levels; a volume whose centre is as bright as its edges is
unchanged. The field is the box of voxels above the volume's lower percentile (the window's low end),
so zero padding around a scan does not move its centre, and the cap never falls below half way from
that lower percentile to the field's upper one, so a heart far from the centre of a dark field keeps
at least half its range of grey levels (what lies above the cap is flattened, as the window flattens
what lies above its top). A NaN voxel makes the cap NaN, as it makes the window's percentiles NaN:
atriumseg's inference and training read NaN and infinite voxels as 0 before either runs
(:func:`finite_or_zero`), and so does the bundle (a step of its own). Free of atriumseg imports: the MONAI
bundle runs a verbatim copy.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile

FLOOR = 0.5  # the cap is at least this far from the volume's lower percentile to the field's upper one


def finite_or_zero(img: torch.Tensor) -> torch.Tensor:
    """``img`` with NaN and infinite voxels as 0 (one NaN makes every percentile, so the whole window, NaN, and
    enough infinite ones an end of it); an integer volume, which holds none, as it is."""
    return torch.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0) if img.is_floating_point() else img


def acquired_box(img: torch.Tensor, level: float) -> tuple[slice, ...]:
    """The bounding box over the spatial axes of a channel-first volume's voxels above ``level`` (the volume's lower
    percentile): the acquired field without the padding around it, even with a few darker voxels inside (the whole
    volume when none is above)."""
    above = (img > level).any(dim=0)
    if not above.any():
        return tuple(slice(0, size) for size in img.shape[1:])
    box = []
    for axis in range(above.ndim):
        kept = torch.nonzero(above.any(dim=tuple(a for a in range(above.ndim) if a != axis))).flatten()
        box.append(slice(int(kept[0]), int(kept[-1]) + 1))
    return tuple(box)


def central_region(shape: Sequence[int], fraction: float) -> tuple[slice, ...]:
    """The middle ``fraction`` of each axis of ``shape`` (non-empty axes): ``fraction`` of its length, rounded down
    but at least one voxel, with as many voxels before it as after it, or one fewer."""
    region = []
    for size in shape:
        length = max(1, int(size * fraction + 1e-9))  # 1e-9: 0.29 * 100 is 28.999999999999996 in floating point
        start = (size - length) // 2
        region.append(slice(start, start + length))
    return tuple(region)


class ClipToCentre(Transform):
    """Cap a channel-first volume ``(C, X, Y, Z)`` at the ``upper`` percentile of the central ``fraction`` (per
    spatial axis, all channels together) of its :func:`acquired_box`, or :data:`FLOOR` of the way from the volume's
    ``lower`` percentile to the box's ``upper`` one when that is higher; metadata is kept."""

    def __init__(self, lower: float, upper: float, fraction: float) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"lower and upper must be percentiles, 0 <= lower < upper <= 100, got {lower}, {upper}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.lower, self.upper, self.fraction = lower, upper, fraction

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        values = img.as_subclass(torch.Tensor).float()  # any dtype: torch.quantile refuses integers
        low = float(percentile(values, self.lower))
        field = values[(slice(None), *acquired_box(values, low))]
        centre = field[(slice(None), *central_region(field.shape[1:], self.fraction))]
        floor = low + FLOOR * (float(percentile(field, self.upper)) - low)
        return img.clamp(max=max(float(percentile(centre, self.upper)), floor))


class ClipToCentred(MapTransform):
    """Dictionary version of :class:`ClipToCentre`."""

    def __init__(self, keys: Hashable | Sequence[Hashable], lower: float, upper: float, fraction: float,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clip = ClipToCentre(lower, upper, fraction)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clip(d[key])
        return d
