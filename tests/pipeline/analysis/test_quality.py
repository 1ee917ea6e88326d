"""Quality flags: each fires on the case it names and stays quiet on a plausible atrium."""

from __future__ import annotations

import numpy as np
import pytest

from atriumseg.pipeline.analysis.quality import border_entropy, quality_flags

SHAPE = (60, 60, 60)
ML = 0.001  # 1 mm voxels


def _ball(radius: float, centre=(30, 30, 30)) -> np.ndarray:
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0)
    return (((grid - np.asarray(centre)) ** 2).sum(-1) <= radius**2).astype(np.uint8)


ATRIUM = _ball(20)  # 33.5 mL, well inside the volume
EDGE_TOUCHING = np.zeros(SHAPE, np.uint8)  # two 12.8 mL blocks meeting along one edge: one component to clean-up
EDGE_TOUCHING[6:30, 6:30, 8:30], EDGE_TOUCHING[30:54, 30:54, 8:30] = 1, 1


@pytest.mark.parametrize(
    ("raw", "mask", "voxel_ml", "expected"),
    [
        (ATRIUM, ATRIUM, ML, ()),
        (np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8), ML, ("empty mask",)),
        (_ball(5), _ball(5), ML, ("volume 1 mL outside 15-250 mL",)),
        (ATRIUM, ATRIUM, 0.01, (f"volume {ATRIUM.sum() * 0.01:.0f} mL outside 15-250 mL",)),
        (_ball(20, (19, 30, 30)), _ball(20, (19, 30, 30)), ML, ("mask touches the volume edge",)),
        (_ball(16, (22, 30, 30)) | _ball(10, (50, 30, 30)), _ball(16, (22, 30, 30)), ML, ("2 large components",)),
        (ATRIUM | _ball(3, (30, 30, 54)), ATRIUM, ML, ()),  # a small stray component is not worth a flag
        (EDGE_TOUCHING, EDGE_TOUCHING, ML, ()),  # connected as clean-up connects (26 neighbours): nothing removed
    ],
    ids=["plausible", "empty", "too-small", "too-large", "edge", "two-large-components", "small-stray",
         "touching-along-an-edge"],
)
def test_quality_flags(raw, mask, voxel_ml, expected) -> None:
    assert quality_flags(raw, mask, voxel_ml) == expected


def test_border_entropy_is_low_for_a_confident_map_and_high_for_a_hesitant_one() -> None:
    confident = ATRIUM * 0.99 + (1 - ATRIUM) * 0.01
    hesitant = np.full(SHAPE, 0.5)
    assert border_entropy(confident, ATRIUM) < 0.1 < 0.99 < border_entropy(hesitant, ATRIUM)
    assert np.isnan(border_entropy(hesitant, np.zeros(SHAPE)))
