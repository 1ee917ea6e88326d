"""The surface of a binary mask as a triangle mesh in world millimetres, and its export to STL, OBJ or VTK.

Marching cubes runs on the voxel grid, every vertex is mapped through the affine, and the
smoothing then runs on those world positions, so the surface does not depend on the voxel size or
orientation. We use trimesh for the Taubin smoothing and the STL/OBJ writers because it is small,
numpy-only and well kept; legacy VTK, which trimesh does not write, is a few lines of text here.
Each file names its frame as ``SPACE=RAS`` or ``SPACE=LPS`` in its header, the tag 3D Slicer reads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from skimage.measure import marching_cubes
from trimesh.exchange.obj import export_obj

from atriumseg.pipeline.io.writing import refuse_existing, write_atomically

FRAME_SIGNS = {"RAS": np.array([1.0, 1.0, 1.0]), "LPS": np.array([-1.0, -1.0, 1.0])}
MESH_SUFFIXES = (".stl", ".obj", ".vtk")
# Taubin's shrink step and a pass band of 0.05 (1/lambda + 1/mu = k_PB): removes the voxel
# staircase and keeps the volume within a fraction of a percent.
TAUBIN_LAMBDA = 0.5
TAUBIN_MU = -1.0 / (1.0 / TAUBIN_LAMBDA - 0.05)
_STL_HEADER_BYTES = 80


@dataclass(frozen=True, eq=False)
class Mesh:
    """A closed triangle surface: ``vertices`` ``(N, 3)`` in mm in ``frame`` ('RAS' or 'LPS') and
    ``faces`` ``(M, 3)`` vertex indices, counter-clockwise seen from outside (normals point out)."""

    vertices: np.ndarray
    faces: np.ndarray
    frame: str = "RAS"

    @property
    def area_mm2(self) -> float:
        """Total area of the triangles in mm²."""
        a, b, c = (self.vertices[self.faces[:, k]] for k in range(3))
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def check_mask(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The foreground ``mask > 0`` as a boolean 3D array and ``affine`` as float64, or a ValueError
    that says what is wrong with them: a mask holds 0 (or NaN) and one label; other values (a probability map,
    an image) would be measured as a volume that means nothing."""
    mask = np.asarray(mask)
    affine = np.asarray(affine, dtype=np.float64)
    if mask.ndim != 3:
        raise ValueError(f"mask must be a 3D array in (x, y, z) order, got shape {mask.shape}; drop any channel axis")
    labelled = np.isfinite(mask) & (mask != 0)
    if labelled.any():
        label = mask[labelled].max()
        others = int(np.count_nonzero(labelled & (mask != label)))
        if others:
            raise ValueError(f"not a mask: besides 0 and {float(label):g} it holds {others:,} voxels of other values "
                             "(a probability map or an image?); measure the mask")
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 voxel-to-RAS matrix, got shape {affine.shape}")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"affine is not finite and invertible, so voxels have no world position:\n{affine}")
    return mask > 0, affine


def mesh(mask: np.ndarray, affine: np.ndarray, frame: str = "RAS", smoothing_iterations: int = 30) -> Mesh:
    """The surface of ``mask > 0`` in world mm: marching cubes at the voxel boundaries, mapped through
    ``affine`` (voxel -> RAS), then ``smoothing_iterations`` Taubin shrink-and-inflate pairs that
    remove the voxel staircase without shrinking the volume (0 keeps the raw marching-cubes surface).

    ``frame='LPS'`` negates x and y, the convention of ITK, DICOM and current 3D Slicer mesh files.
    Raises ValueError for an empty mask, which has no surface.
    """
    frame = frame.upper()
    if frame not in FRAME_SIGNS:
        raise ValueError(f"frame must be one of {sorted(FRAME_SIGNS)}, got {frame!r}")
    if smoothing_iterations < 0:
        raise ValueError(f"smoothing_iterations must be 0 or more, got {smoothing_iterations}")
    foreground, affine = check_mask(mask, affine)
    if not foreground.any():
        raise ValueError("mask has no foreground voxel, so it has no surface to mesh")
    ijk = np.argwhere(foreground)
    low, high = ijk.min(axis=0), ijk.max(axis=0) + 1
    # One voxel of background on every side closes the surface where the mask touches the border.
    box = np.pad(foreground[tuple(slice(a, b) for a, b in zip(low, high, strict=True))], 1).astype(np.float32)
    points, faces, _, _ = marching_cubes(box, level=0.5, gradient_direction="ascent")
    linear = affine[:3, :3]
    vertices = (points.astype(np.float64) + (low - 1)) @ linear.T + affine[:3, 3]
    if np.linalg.det(linear) < 0:
        faces = faces[:, ::-1]
    if smoothing_iterations:
        surface = trimesh.Trimesh(vertices, faces, process=False)
        trimesh.smoothing.filter_taubin(
            surface, lamb=TAUBIN_LAMBDA, nu=-TAUBIN_MU, iterations=2 * smoothing_iterations
        )
        vertices = np.asarray(surface.vertices, dtype=np.float64)
    return Mesh(vertices=vertices * FRAME_SIGNS[frame], faces=np.ascontiguousarray(faces, dtype=np.int64), frame=frame)


def save_mesh(surface: Mesh, path: Path, overwrite: bool = False) -> Path:
    """Write ``surface`` as binary STL, OBJ or legacy ASCII VTK polydata, chosen by the suffix of
    ``path``; atomically (a temporary file in the same folder, then a rename), never half a file; an existing
    file is kept unless ``overwrite``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"{path}: unknown mesh format {suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    refuse_existing(path, overwrite)
    return write_atomically(path, lambda tmp: tmp.write_bytes(_encode(surface, suffix)), overwrite)


def _encode(surface: Mesh, suffix: str) -> bytes:
    title = f"atriumseg surface SPACE={surface.frame}"
    if suffix == ".vtk":
        return _vtk_polydata(surface, title).encode()
    triangles = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    if suffix == ".obj":
        return export_obj(triangles, include_normals=False, header=title).encode()
    binary = triangles.export(file_type="stl")
    return title.encode().ljust(_STL_HEADER_BYTES, b" ") + binary[_STL_HEADER_BYTES:]


def _vtk_polydata(surface: Mesh, title: str) -> str:
    text = io.StringIO()
    text.write(f"# vtk DataFile Version 3.0\n{title}\nASCII\nDATASET POLYDATA\n")
    text.write(f"POINTS {len(surface.vertices)} double\n")
    np.savetxt(text, surface.vertices, fmt="%.9g")
    text.write(f"POLYGONS {len(surface.faces)} {4 * len(surface.faces)}\n")
    np.savetxt(text, np.column_stack([np.full(len(surface.faces), 3), surface.faces]), fmt="%d")
    return text.getvalue()
