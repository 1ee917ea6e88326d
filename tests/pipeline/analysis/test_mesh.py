"""Meshes lie on the anatomy in world mm whatever the voxel grid, and every export format reads back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from helpers import CENTRE, ELLIPSOID_GRIDS, ROTATION, SEMI_AXES, ellipsoid_mask

from atriumseg.pipeline.analysis.mesh import Mesh, mesh, save_mesh
from atriumseg.synthetic import make_affine

VOLUME_MM3 = 4 / 3 * math.pi * float(np.prod(SEMI_AXES))

GRIDS = ELLIPSOID_GRIDS
# Smoothed vertices sit within these distances of the true surface, in units of the largest voxel edge.
MAX_DISTANCE_EDGES = 0.75
RMS_DISTANCE_EDGES = 0.15
MAX_MEAN_DISTANCE_MM = 0.05


def radial_distance_mm(vertices: np.ndarray) -> np.ndarray:
    """Signed distance (outside > 0) from the ellipsoid's surface along the ray from its centre, in mm;
    never smaller than the distance to the nearest surface point."""
    radius = np.linalg.norm(((vertices - CENTRE) @ ROTATION) / SEMI_AXES, axis=1)
    return np.linalg.norm(vertices - CENTRE, axis=1) * (1 - 1 / radius)


def closed_outward(surface: Mesh) -> trimesh.Trimesh:
    triangles = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    assert triangles.is_watertight and triangles.is_winding_consistent
    assert triangles.volume > 0, "faces wind inwards"
    return triangles


@pytest.mark.parametrize(("grid_id", "spacing", "codes", "rotation"), GRIDS, ids=[g[0] for g in GRIDS])
def test_smoothed_vertices_lie_on_the_world_surface(grid_id, spacing, codes, rotation) -> None:
    surface = mesh(*ellipsoid_mask(spacing, codes, rotation))
    distance = radial_distance_mm(surface.vertices)
    mean, rms, worst = distance.mean(), np.sqrt(np.mean(distance**2)), np.abs(distance).max()
    figures = f"{grid_id}: distance to the surface mean {mean:+.3f} mm, rms {rms:.3f} mm, max {worst:.3f} mm"
    assert abs(mean) < MAX_MEAN_DISTANCE_MM, figures
    assert rms < RMS_DISTANCE_EDGES * max(spacing) and worst < MAX_DISTANCE_EDGES * max(spacing), figures
    volume = closed_outward(surface).volume
    assert volume == pytest.approx(VOLUME_MM3, rel=0.01), f"{grid_id}: {volume:.0f} mm³ vs {VOLUME_MM3:.0f}"


@pytest.mark.parametrize(("grid_id", "spacing", "codes", "rotation"), GRIDS, ids=[g[0] for g in GRIDS])
def test_unsmoothed_vertices_are_voxel_edge_midpoints(grid_id, spacing, codes, rotation) -> None:
    mask, affine = ellipsoid_mask(spacing, codes, rotation)
    surface = mesh(mask, affine, smoothing_iterations=0)
    ijk = (surface.vertices - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    halves = np.isclose(ijk % 1, 0.5, atol=1e-6)
    whole = np.isclose(ijk % 1, 0.0, atol=1e-6) | np.isclose(ijk % 1, 1.0, atol=1e-6)
    assert (halves.sum(1) == 1).all() and (halves | whole).all(), grid_id
    inside = mask[tuple(np.floor(ijk + ~halves * 0.5).astype(int).T)]
    outside = mask[tuple(np.floor(ijk + halves * 1.0 + ~halves * 0.5).astype(int).T)]
    assert (inside != outside).all(), f"{grid_id}: a vertex is not between a foreground and a background voxel"
    closed_outward(surface)


def test_mask_touching_the_border_gives_a_closed_surface() -> None:
    affine = make_affine((5, 6, 7), (0.8, 1.1, 2.0), "LAS", (0, 8, 0))
    surface = mesh(np.ones((5, 6, 7), np.uint8), affine, smoothing_iterations=0)
    ijk = (surface.vertices - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    assert ijk.min() == pytest.approx(-0.5) and np.allclose(ijk.max(0), [4.5, 5.5, 6.5])
    closed_outward(surface)


def test_lps_frame_negates_x_and_y() -> None:
    mask, affine = ellipsoid_mask((2.0, 2.0, 2.0), "PIR", (0, 8, 0))
    ras, lps = mesh(mask, affine), mesh(mask, affine, frame="lps")
    assert (ras.frame, lps.frame) == ("RAS", "LPS")
    np.testing.assert_array_equal(lps.vertices, ras.vertices * [-1, -1, 1])
    np.testing.assert_array_equal(lps.faces, ras.faces)
    assert lps.area_mm2 == pytest.approx(ras.area_mm2, rel=1e-12)


@pytest.mark.parametrize(
    ("mask", "kwargs", "match"),
    [
        (np.zeros((5, 6, 7), np.uint8), {}, "no foreground"),
        (np.ones((5, 6, 7), np.uint8), {"frame": "XYZ"}, "frame must be one of"),
        (np.ones((5, 6, 7), np.uint8), {"smoothing_iterations": -1}, "0 or more"),
        (np.ones((5, 6), np.uint8), {}, "3D array"),
    ],
    ids=["empty", "frame", "iterations", "2d"],
)
def test_bad_arguments_are_refused_with_the_reason(mask, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        mesh(mask, np.eye(4), **kwargs)


def read_with_trimesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    loaded = trimesh.load(path, force="mesh")
    return np.asarray(loaded.vertices), np.asarray(loaded.faces)


def read_vtk_polydata(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    assert lines[0] == "# vtk DataFile Version 3.0" and lines[2:4] == ["ASCII", "DATASET POLYDATA"]
    keyword, points, kind = lines[4].split()
    assert (keyword, kind) == ("POINTS", "double")
    n = int(points)
    vertices = np.loadtxt(lines[5 : 5 + n], ndmin=2)
    keyword, polygons, size = lines[5 + n].split()
    assert keyword == "POLYGONS" and int(size) == 4 * int(polygons) == 4 * (len(lines) - 6 - n)
    cells = np.loadtxt(lines[6 + n :], dtype=np.int64, ndmin=2)
    assert (cells[:, 0] == 3).all()
    return vertices, cells[:, 1:]


# (suffix, reader, relative precision of the stored coordinates)
FORMATS = [(".stl", read_with_trimesh, 1e-6), (".obj", read_with_trimesh, 1e-8), (".vtk", read_vtk_polydata, 1e-8)]


@pytest.mark.parametrize("frame", ["RAS", "LPS"])
@pytest.mark.parametrize(("suffix", "read", "precision"), FORMATS, ids=[f[0] for f in FORMATS])
def test_export_reads_back_with_its_frame_in_the_header(tmp_path: Path, frame, suffix, read, precision) -> None:
    surface = mesh(*ellipsoid_mask((2.0, 2.2, 2.5), "LAS", (10, 0, 0)), frame=frame)
    path = save_mesh(surface, tmp_path / "out" / f"atrium{suffix.upper()}")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert f"SPACE={frame}".encode() in path.read_bytes()[:80]
    vertices, faces = read(path)
    assert (len(vertices), len(faces)) == (len(surface.vertices), len(surface.faces))
    back = trimesh.Trimesh(vertices, faces, process=False)
    assert back.area == pytest.approx(surface.area_mm2, rel=10 * precision)
    assert back.volume == pytest.approx(closed_outward(surface).volume, rel=10 * precision)


def test_save_refuses_unknown_format_and_existing_file(tmp_path: Path) -> None:
    surface = mesh(np.ones((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match=r"'\.ply'.*\.stl, \.obj, \.vtk"):
        save_mesh(surface, tmp_path / "atrium.ply")
    path = tmp_path / "atrium.stl"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_mesh(surface, path)
    assert path.read_bytes() == b"keep me"
    save_mesh(surface, path, overwrite=True)
    assert len(read_with_trimesh(path)[1]) == len(surface.faces)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atrium.stl"]
