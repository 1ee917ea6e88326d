"""Boxes of a volume in voxels and in world millimetres."""

from __future__ import annotations

import torch

from atriumseg.pipeline.inference.regions import bounding_box, box_corners, box_on_grid, translation
from atriumseg.synthetic import make_affine


def test_bounding_box_holds_every_nonzero_voxel_and_no_more() -> None:
    mask = torch.zeros((9, 10, 11), dtype=torch.bool)
    mask[2, 3, 4] = mask[5, 7, 8] = True
    assert bounding_box(mask) == (slice(2, 6), slice(3, 8), slice(4, 9))


def test_translation_shifts_voxel_indices() -> None:
    shift = translation([1, -2, 3.5])
    assert torch.equal(shift @ torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64),
                       torch.tensor([1.0, -2.0, 3.5, 1.0], dtype=torch.float64))


def test_a_box_maps_onto_another_grid_through_world_millimetres() -> None:
    """A box on an oblique grid, seen on a grid of half the voxel size in another orientation, covers the same
    world points: the voxel centres of the first box all fall inside the box on the second grid."""
    first = torch.from_numpy(make_affine((30, 30, 30), (2.0, 2.0, 2.0), "LPS", (10, 0, -5)))
    second = torch.from_numpy(make_affine((60, 60, 60), (1.0, 1.0, 1.0), "RAS"))
    box = (slice(10, 14), slice(8, 20), slice(12, 13))
    mapped = box_on_grid(box_corners(box, first), second, (60, 60, 60))
    assert mapped is not None
    centres = torch.cartesian_prod(*[torch.arange(s.start, s.stop, dtype=torch.float64) for s in box])
    world = centres @ first[:3, :3].T + first[:3, 3]
    inverse = torch.linalg.inv(second)
    on_second = world @ inverse[:3, :3].T + inverse[:3, 3]
    for axis, span in enumerate(mapped):
        assert span.start <= float(on_second[:, axis].min()) and float(on_second[:, axis].max()) <= span.stop - 1
    assert box_on_grid(box_corners(box, first), first, (30, 30, 30)) == box, "the same grid gives the same box"


def test_a_box_off_the_grid_maps_to_nothing() -> None:
    affine = torch.eye(4, dtype=torch.float64)
    far = box_corners((slice(100, 110), slice(0, 5), slice(0, 5)), affine)
    assert box_on_grid(far, affine, (20, 20, 20)) is None
