"""Seeded synthetic MRI-like volumes with a left-atrium-like structure defined in world space.

The anatomy lives in world (RAS, mm) coordinates and is sampled on whatever voxel grid the
affine describes, so the same "patient" can be stored as RAS, LPS, oblique or anisotropic
volumes and every label lands on the same anatomy. Used by the tests, and by anyone who wants
to try the package without patient data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from atriumseg.geometry import AXIS_UNIT, validate_axcodes


@dataclass(frozen=True)
class SyntheticCase:
    """A synthetic image, its ground-truth left-atrium label and their shared affine (voxel -> RAS mm)."""

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray


def make_affine(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5),
    axcodes: str = "RAS",
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """A voxel-to-RAS affine whose axes point along ``axcodes``, then rotated (xyz Euler degrees),
    with the volume's centre at world ``center``."""
    axes = np.stack([np.asarray(AXIS_UNIT[c], float) for c in validate_axcodes(axcodes)], axis=1)
    direction = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix() @ axes
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing, float)
    affine[:3, 3] = np.asarray(center, float) - affine[:3, :3] @ ((np.asarray(shape, float) - 1) / 2)
    return affine


def world_coordinates(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World (RAS mm) coordinates of every voxel centre, shape ``(*shape, 3)``."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def _ellipsoid(xyz: np.ndarray, center: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    local = (xyz - center) @ rotation
    return ((local / radii) ** 2).sum(-1) <= 1.0


def synthetic_case(
    shape: tuple[int, int, int] = (48, 48, 40),
    affine: np.ndarray | None = None,
    seed: int = 0,
    scale: float = 1000.0,
    noise: float = 0.04,
    bias: float = 0.3,
    dtype: type = np.float32,
) -> SyntheticCase:
    """A seeded MRI-like volume: an ellipsoidal bright "atrium" beside a larger, dimmer "ventricle",
    a tubular "aorta" and small bright blobs, on a textured background, with a smooth bias field,
    Rician-like noise and an arbitrary intensity ``scale``. The anatomy is placed in world space
    near the volume's centre; the same ``seed`` gives the same anatomy on any grid.
    """
    rng = np.random.default_rng(seed)
    affine = make_affine(shape) if affine is None else np.asarray(affine, float)
    xyz = world_coordinates(shape, affine)
    center = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    rot = Rotation.from_euler("xyz", rng.uniform(-25, 25, 3), degrees=True).as_matrix()
    atrium_center = center + rng.uniform(-6, 6, 3)
    atrium_radii = rng.uniform([14, 11, 9], [18, 14, 12])
    label = _ellipsoid(xyz, atrium_center, atrium_radii, rot)

    image = np.full(shape, 0.15, np.float32)
    ventricle = _ellipsoid(xyz, atrium_center + rot @ np.array([0.0, 22.0, -14.0]), np.array([16, 20, 14.0]), rot)
    image[ventricle] = 0.55
    aorta_axis = rot @ np.array([0.0, 0.0, 1.0])
    offset = xyz - (atrium_center + rot @ np.array([-20.0, 8.0, 0.0]))
    radial = offset - (offset @ aorta_axis)[..., None] * aorta_axis
    image[(radial**2).sum(-1) <= 7.0**2] = 0.7
    for _ in range(3):
        blob_center = atrium_center + rng.uniform(-35, 35, 3)
        blob = ((xyz - blob_center) ** 2).sum(-1) <= rng.uniform(4, 7) ** 2
        image[blob & ~label] = 0.8
    image[label] = 1.0
    gradient = (xyz - center) @ rng.normal(size=3).astype(np.float32)
    field = 1.0 + bias * np.tanh(gradient / (np.abs(gradient).max() + 1e-6))
    signal = image * field
    noisy = np.hypot(signal + noise * rng.standard_normal(shape), noise * rng.standard_normal(shape))
    return SyntheticCase(image=(noisy * scale).astype(dtype), label=label.astype(np.uint8), affine=affine)
