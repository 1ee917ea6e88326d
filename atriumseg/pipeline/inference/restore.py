"""Probabilities back on the input's voxel grid, through the two affines alone."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample
from monai.utils import TraceKeys

from atriumseg.pipeline.inference.regions import Region, bounding_box, translation

PROB_FLOOR = 0.01  # probabilities below this (or below the threshold, if lower) are 0 on the input grid


def to_input_grid(
    prob: torch.Tensor, region: Region, prepared: MetaTensor, target: MetaTensor, floor: float = PROB_FLOOR
) -> torch.Tensor:
    """Probabilities of ``region`` of the preprocessed volume ``prepared``, on the voxel grid of ``target``.

    The padding the preprocessing added (to a minimum slice size, then to the network's divisor) is
    left out first, so that at the grid's outer faces the edge values repeat, exactly as MONAI's
    inverse of the chain does. Pads nest, so what they added on each side simply adds up.
    """
    before, after = [0] * len(prepared.shape), [0] * len(prepared.shape)
    for operation in prepared.applied_operations:
        if operation[TraceKeys.CLASS_NAME] in ("SpatialPad", "DivisiblePad"):
            for axis, (lo, hi) in enumerate(operation[TraceKeys.EXTRA_INFO]["padded"]):
                before[axis] += lo
                after[axis] += hi
    valid = [slice(lo, n - hi) for lo, hi, n in zip(before, after, prepared.shape, strict=True)]
    kept = []
    for r, v in zip(region, valid, strict=True):
        start = max(r.start, v.start)
        kept.append(slice(start, max(start, min(r.stop, v.stop))))
    prob = prob[tuple(slice(k.start - r.start, k.stop - r.start) for k, r in zip(kept, region, strict=True))]
    affine = torch.as_tensor(prepared.affine, dtype=torch.float64) @ translation([k.start for k in kept[1:]])
    return restore(prob, affine, target, floor)


def restore(prob: torch.Tensor, affine: torch.Tensor, target: MetaTensor, floor: float = PROB_FLOOR) -> torch.Tensor:
    """``prob`` ``(1, ...)``, on the voxel grid whose affine is ``affine``, resampled onto the grid of ``target``.

    Only the box where ``prob`` reaches ``floor`` (plus one voxel) is resampled, by MONAI's
    ``SpatialResample`` (bilinear, as the inverse of the preprocessing's ``Spacing`` would), onto
    the part of ``target``'s grid it covers; the rest is 0. The affines alone relate the two grids,
    so orientation, spacing and padding are undone in one step, at a cost set by the atrium's
    size rather than the volume's.
    """
    restored = torch.zeros((1, *target.shape[1:]), dtype=torch.float32)
    found = prob[0] >= floor
    if not found.any():
        return restored
    spans = zip(bounding_box(found), found.shape, strict=True)
    box = [slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in spans]
    crop_affine = torch.as_tensor(affine, dtype=torch.float64) @ translation([s.start for s in box])
    target_affine = torch.as_tensor(target.affine, dtype=torch.float64)
    to_target = torch.linalg.inv(target_affine) @ crop_affine
    corners = torch.cartesian_prod(*[torch.tensor([0.0, s.stop - s.start - 1.0], dtype=torch.float64) for s in box])
    landed = corners @ to_target[:3, :3].T + to_target[:3, 3]
    shape = torch.tensor(target.shape[1:])
    lo = torch.floor(landed.min(0).values).long().clamp(0, None).minimum(shape)
    hi = (torch.ceil(landed.max(0).values).long() + 1).maximum(lo).minimum(shape)
    if bool((hi <= lo).any()):
        return restored
    crop = MetaTensor(prob[(slice(None), *box)], affine=crop_affine)
    resampled = SpatialResample(mode="bilinear", padding_mode="border", dtype=torch.float32)(
        crop, dst_affine=target_affine @ translation(lo.tolist()), spatial_size=(hi - lo).tolist()
    )
    restored[(slice(None), *[slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)])] = resampled.as_tensor()
    return restored
