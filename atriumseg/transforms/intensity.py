"""Capping intensities at the upper percentile of the volume's centre, before the per-volume window.

A bright rim at the edge of the field (fat beside a surface coil, inflow) can set a whole volume's
upper percentile, so the window then squeezes the heart into its lower grey levels. The heart sits
near the centre of a cardiac scan's field: capping every voxel at the centre's upper percentile
keeps the window on the heart's grey levels; a volume whose centre is as bright as its edges is
unchanged. The field is the box of voxels above the volume's minimum, so zero padding around a scan
does not move its centre, and the cap never falls below half the field's own upper percentile, so a
heart far from the centre of a dark field is squeezed at most twofold, never erased. A NaN voxel makes
the cap NaN: atriumseg and the bundle read NaN as 0 before this runs. Free of atriumseg imports: the
MONAI bundle runs a verbatim copy.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile

FLOOR = 0.5  # the cap is at least this fraction of the whole field's upper percentile


def acquired_box(img: torch.Tensor) -> tuple[slice, ...]:
    """The bounding box over the spatial axes of a channel-first volume's voxels above its minimum: the acquired
    field without the constant padding around it (the whole volume when it is constant)."""
    above = (img > img.min()).any(dim=0)
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
    spatial axis, all channels together) of its :func:`acquired_box`, or at :data:`FLOOR` times the box's own
    ``upper`` percentile when that is higher; metadata is kept."""

    def __init__(self, upper: float, fraction: float) -> None:
        if not 0.0 <= upper <= 100.0:
            raise ValueError(f"upper must be a percentile in [0, 100], got {upper}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.upper, self.fraction = upper, fraction

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        values = img.as_subclass(torch.Tensor).float()  # any dtype: torch.quantile refuses integers
        field = values[(slice(None), *acquired_box(values))]
        centre = field[(slice(None), *central_region(field.shape[1:], self.fraction))]
        cap = max(float(percentile(centre, self.upper)), FLOOR * float(percentile(field, self.upper)))
        return img.clamp(max=cap)


class ClipToCentred(MapTransform):
    """Dictionary version of :class:`ClipToCentre`."""

    def __init__(self, keys: Hashable | Sequence[Hashable], upper: float, fraction: float,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clip = ClipToCentre(upper, fraction)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clip(d[key])
        return d
