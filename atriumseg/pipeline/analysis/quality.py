"""Quality flags for a predicted mask: the cases a reviewer should look at first."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PLAUSIBLE_ML = (15.0, 250.0)  # adult left-atrium volumes outside this range are suspicious
LARGE_COMPONENT = 0.2  # a second component this large (relative to the largest) is flagged


def quality_flags(raw: np.ndarray, mask: np.ndarray, voxel_ml: float) -> tuple[str, ...]:
    """Flags for ``mask`` (after clean-up) and ``raw`` (the thresholded prediction before it)."""
    voxels = int(mask.sum())
    if voxels == 0:
        return ("empty mask",)
    flags = []
    volume = voxels * voxel_ml
    if not PLAUSIBLE_ML[0] <= volume <= PLAUSIBLE_ML[1]:
        flags.append(f"volume {volume:.0f} mL outside {PLAUSIBLE_ML[0]:.0f}-{PLAUSIBLE_ML[1]:.0f} mL")
    border = np.zeros(mask.shape, bool)
    for axis in range(mask.ndim):
        index = [slice(None)] * mask.ndim
        index[axis] = [0, -1]
        border[tuple(index)] = True
    if mask[border].any():
        flags.append("mask touches the volume edge")
    labels, count = ndimage.label(raw, structure=np.ones((3, 3, 3)))  # as clean-up connects: 26 neighbours
    if count > 1:
        sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
        if sizes[1] >= LARGE_COMPONENT * sizes[0]:
            flags.append(f"{int((sizes >= LARGE_COMPONENT * sizes[0]).sum())} large components")
    return tuple(flags)


def border_entropy(prob: np.ndarray, mask: np.ndarray, width: int = 2) -> float:
    """Mean binary entropy (bits) of ``prob`` in a band of ``width`` voxels around the mask's boundary.

    Near 0 when the model (or its test-time augmentations) agree on where the atrium ends; up to 1
    when they do not. NaN for an empty mask.
    """
    mask = np.asarray(mask) > 0
    if not mask.any():
        return float("nan")
    band = ndimage.binary_dilation(mask, iterations=width) & ~ndimage.binary_erosion(mask, iterations=width)
    p = np.clip(np.asarray(prob, dtype=np.float64)[band], 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
