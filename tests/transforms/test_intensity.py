"""Capping at the centre's upper percentile: a bright rim at the field's edge no longer sets the window, a
volume whose centre holds its brightest voxels is left as it is, and the metadata stays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from atriumseg.transforms.intensity import FLOOR, ClipToCentre, ClipToCentred, acquired_box, central_region


def rim_volume(seed: int = 0) -> MetaTensor:
    """``(1, 20, 24, 16)``: uniform noise in [0.1, 1.1) with its first two x-slices (a tenth of the volume) at 1.8,
    under twice the centre's brightest (the cap's floor, half the field's percentile, stays below the centre's)."""
    values = 0.1 + torch.rand(1, 20, 24, 16, generator=torch.Generator().manual_seed(seed))
    values[:, :2] = 1.8
    return MetaTensor(values, affine=torch.diag(torch.tensor([1.5, 0.8, 2.5, 1.0], dtype=torch.float64)))


@pytest.mark.parametrize(("shape", "fraction", "expected"), [
    ((8, 9, 10), 0.5, ((2, 6), (2, 6), (2, 7))),  # half the length, rounded down, as many voxels each side or one fewer
    ((10, 10, 10), 1.0, ((0, 10), (0, 10), (0, 10))),
    ((1, 2, 5), 0.1, ((0, 1), (0, 1), (2, 3))),  # never empty
    ((100, 100, 100), 0.29, ((35, 64), (35, 64), (35, 64))),  # 29 voxels, though 0.29 * 100 is 28.999999999999996
])
def test_the_central_region_is_the_middle_fraction_of_each_axis(shape: tuple, fraction: float, expected: tuple) -> None:
    assert tuple((s.start, s.stop) for s in central_region(shape, fraction)) == expected


def test_a_bright_rim_is_capped_at_the_upper_percentile_of_the_centre() -> None:
    volume = rim_volume()
    capped = ClipToCentre(lower=1.0, upper=99.0, fraction=0.5)(volume)
    centre = volume[:, 5:15, 6:18, 4:12]
    cap = float(np.percentile(centre.numpy(), 99.0))
    assert capped.max().item() == pytest.approx(cap, rel=1e-6) and cap < 1.1
    assert torch.equal(capped[:, :2], torch.full_like(capped[:, :2], cap))  # the rim, at the centre's level
    below = volume < cap
    assert torch.equal(capped[below], volume[below])  # everything else untouched
    assert isinstance(capped, MetaTensor) and torch.equal(capped.affine, volume.affine)


def test_a_volume_brightest_at_its_centre_is_unchanged() -> None:
    volume = rim_volume()
    volume[:, :2] = 0.5
    volume[:, 8:12, 10:14, 6:10] = 50.0  # more than 1% of the centre: its own 99th percentile
    capped = ClipToCentred(keys="image", lower=1.0, upper=99.0, fraction=0.5)({"image": volume})["image"]
    assert torch.equal(capped, volume)


def test_an_integer_volume_is_capped_at_its_centres_percentile() -> None:
    """``torch.quantile`` refuses integers; a scanner's int16 volume must not depend on going through numpy."""
    volume = (rim_volume() * 100).to(torch.int16)
    capped = ClipToCentre(lower=1.0, upper=99.0, fraction=0.5)(volume)
    cap = np.percentile(volume[:, 5:15, 6:18, 4:12].numpy(), 99.0)
    assert capped.max().item() == pytest.approx(cap) and cap < 110


def test_zero_padding_around_a_scan_does_not_move_its_centre() -> None:
    """The scan in a corner of a field three times as wide, zeros elsewhere (and one voxel below them, as ringing
    leaves): capped as the scan alone is, not at the percentile of a centre that is nearly all padding (which
    erased the heart: Dice 0.58 on la_023 so placed)."""
    volume = rim_volume()
    padded = torch.zeros(1, 60, 72, 16)
    padded[:, :20, :24] = volume
    padded[0, 59, 71, 15] = -0.01
    clip = ClipToCentre(1.0, 99.0, 0.5)
    assert torch.equal(clip(padded)[:, :20, :24], clip(volume))
    assert [(s.start, s.stop) for s in acquired_box(padded, 0.0)] == [(0, 20), (0, 24), (0, 16)]


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_a_dark_centre_caps_half_way_up_the_fields_window_at_lowest(offset: float) -> None:
    """Wherever the intensities start (signed or offset scans too), the cap keeps the upper half of the window."""
    volume = rim_volume() + offset
    volume[:, 5:15, 6:18, 4:12] = offset + 0.01  # the heart far from a dark centre
    capped = ClipToCentre(1.0, 99.0, 0.5)(volume)
    low, high = np.percentile(volume.numpy(), [1.0, 99.0])
    assert capped.max().item() == pytest.approx(low + FLOOR * (high - low), rel=1e-6)
    assert capped.max().item() - low > 0.8  # not squeezed onto the low end


@pytest.mark.parametrize(("lower", "upper", "fraction"), [(0.5, 101.0, 0.5), (99.5, 0.5, 0.5), (0.5, 99.5, 0.0),
                                                          (0.5, 99.5, 1.5)])
def test_impossible_arguments_are_refused(lower: float, upper: float, fraction: float) -> None:
    with pytest.raises(ValueError, match="must be percentiles|fraction must be"):
        ClipToCentre(lower, upper, fraction)
