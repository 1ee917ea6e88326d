"""Anatomical axis codes ('RAS', 'LPS', 'ASL'...) and voxel sizes from affines; numpy only, no torch.

The bottom layer of the package: models, transforms and every pipeline stage read axis codes and
voxel sizes from here, and this module imports nothing of atriumseg.
"""

from __future__ import annotations

import numpy as np

# The RAS-world unit vector each axis code points along.
AXIS_UNIT = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def validate_axcodes(codes: str) -> str:
    """Upper-case axis codes such as ``'ASL'``, or a ValueError that says what is accepted."""
    if not isinstance(codes, str):
        raise ValueError(f"orientation must be a string of three axis codes such as 'RAS', got {codes!r}")
    upper = codes.upper()
    if len(upper) != 3 or any(sum(c in pair for c in upper) != 1 for pair in ("LR", "AP", "SI")):
        raise ValueError(
            f"orientation {codes!r} is not three axis codes naming each of L/R, A/P and S/I once "
            "(for example 'RAS', 'LPS' or 'ASL')"
        )
    return upper


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm from a 4x4 (or 3x3) affine: the lengths of its columns, rotations and flips allowed."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def affine_with_axcodes(affine: np.ndarray, codes: str) -> np.ndarray:
    """``affine`` with its voxel axes pointing along ``codes`` (RAS world), same voxel sizes and origin."""
    codes = validate_axcodes(codes)
    affine = np.asarray(affine, dtype=np.float64)
    fixed = np.eye(4)
    fixed[:3, :3] = np.stack(
        [np.asarray(AXIS_UNIT[c], float) * s for c, s in zip(codes, voxel_spacing(affine), strict=True)], axis=1
    )
    fixed[:3, 3] = affine[:3, 3]
    return fixed
