"""QC pictures: contours drawn in their colours, views through the atrium whatever the stored orientation,
with the voxels' physical aspect."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy import ndimage

from atriumseg.pipeline.analysis.overlay import (
    FIGURE_SIZE_PX,
    PREDICTION_COLOUR,
    TRUTH_COLOUR,
    orthogonal_views,
    overlay_png,
)
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (41, 37, 29)
SPACING = (1.0, 1.25, 2.5)
RAS_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}


@pytest.fixture(scope="module")
def ras_case():
    return synthetic_case(SHAPE, make_affine(SHAPE, SPACING, "RAS"), seed=7)


def stored_as(array: np.ndarray, codes: str) -> np.ndarray:
    """The RAS ``array`` with its axes permuted and flipped to ``codes``, built independently of nibabel."""
    out = array.transpose([RAS_AXIS[c] for c in codes])
    return np.ascontiguousarray(np.flip(out, axis=[i for i, c in enumerate(codes) if c in "LPI"]))


def affine_for(codes: str, rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The affine of the same grid as the RAS case (same voxel centres) stored along ``codes``."""
    shape = tuple(SHAPE[RAS_AXIS[c]] for c in codes)
    return make_affine(shape, tuple(SPACING[RAS_AXIS[c]] for c in codes), codes, rotation_deg)


def read_png(path: Path) -> np.ndarray:
    rgba = matplotlib.image.imread(path)
    assert rgba.dtype == np.float32 and rgba.ndim == 3, f"{path} is not an RGB(A) image"
    return rgba[..., :3]


def colour_pixels(rgb: np.ndarray, colour: tuple[float, float, float]) -> int:
    """Pixels of ``colour`` in the panels (below the title and legend band)."""
    panels = rgb[int(0.2 * rgb.shape[0]) :]
    return int(np.all(np.abs(panels - np.asarray(colour)) < 0.08, axis=-1).sum())


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3]


@pytest.mark.parametrize("with_truth", [True, False])
def test_overlay_png_draws_contours_in_their_colours(ras_case, tmp_path: Path, with_truth: bool) -> None:
    prediction = ndimage.binary_dilation(ras_case.label, iterations=2).astype(np.uint8)
    truth = ras_case.label if with_truth else None
    path = overlay_png(ras_case.image, ras_case.affine, prediction, tmp_path / "case.png", truth, "case_007")
    assert path == tmp_path / "case.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = read_png(path)
    assert rgb.shape[1::-1] == FIGURE_SIZE_PX
    assert colour_pixels(rgb, PREDICTION_COLOUR) > 200, "prediction contour missing"
    truth_pixels = colour_pixels(rgb, TRUTH_COLOUR)
    assert (truth_pixels > 200) if with_truth else (truth_pixels == 0), f"{truth_pixels} truth-coloured pixels"
    assert [p.name for p in tmp_path.iterdir()] == ["case.png"], "temporary file left behind"


@pytest.mark.parametrize("codes", ["LPS", "PIR", "ASL"])
def test_views_are_the_same_whatever_the_stored_orientation(ras_case, tmp_path: Path, codes: str) -> None:
    affine = affine_for(codes)
    image, label = stored_as(ras_case.image, codes), stored_as(ras_case.label, codes)
    np.testing.assert_array_equal(synthetic_case(label.shape, affine, seed=7).label, label)  # same grid, same anatomy

    reference = read_png(overlay_png(ras_case.image, ras_case.affine, ras_case.label, tmp_path / "ras.png"))
    stored = read_png(overlay_png(image, affine, label, tmp_path / f"{codes}.png"))
    np.testing.assert_array_equal(stored, reference)
    lying = read_png(overlay_png(image, ras_case.affine, label, tmp_path / "lying.png"))
    assert np.abs(lying - reference).mean() > 0.01, "a header that lies about orientation should change the picture"


@pytest.mark.parametrize(
    ("codes", "rotation_deg"),
    [("RAS", (0.0, 0.0, 0.0)), ("PIR", (0.0, 0.0, 0.0)), ("LPS", (12.0, -8.0, 5.0)), ("ASL", (-10.0, 6.0, 15.0))],
)
def test_views_cross_at_the_atrium_with_physical_aspect(codes: str, rotation_deg: tuple[float, float, float]) -> None:
    affine = affine_for(codes, rotation_deg)
    case = synthetic_case(tuple(SHAPE[RAS_AXIS[c]] for c in codes), affine, seed=7)
    views = orthogonal_views(case.image, case.affine, case.label)
    assert [p.name for p in views.panels] == ["sagittal", "coronal", "axial"]
    distance = np.linalg.norm(np.asarray(views.cut_mm) - world_centroid(case.label, case.affine))
    assert distance <= np.linalg.norm(SPACING) / 2 + 1e-6, f"planes cross {distance:.2f} mm from the atrium centroid"
    for panel in views.panels:
        assert panel.prediction.sum() > 50, f"{panel.name} slice shows only {panel.prediction.sum()} atrium pixels"
    assert [p.aspect for p in views.panels] == pytest.approx([2.5 / 1.25, 2.5 / 1.0, 1.25 / 1.0])
    assert [p.sides for p in views.panels] == [("A", "P", "S", "I"), ("R", "L", "S", "I"), ("R", "L", "A", "P")]


def test_empty_prediction_renders_through_the_volume_centre(ras_case, tmp_path: Path) -> None:
    empty = np.zeros(SHAPE, np.uint8)
    views = orthogonal_views(ras_case.image, ras_case.affine, empty)
    np.testing.assert_allclose(views.cut_mm, (0.0, 0.0, 0.0), atol=1e-9)  # make_affine centres the volume at 0
    rgb = read_png(overlay_png(ras_case.image, ras_case.affine, empty, tmp_path / "empty.png", title="no atrium"))
    assert rgb.shape[1::-1] == FIGURE_SIZE_PX
    assert colour_pixels(rgb, PREDICTION_COLOUR) == 0
    assert rgb.std() > 0.1, "the image itself should still be drawn"


@pytest.mark.parametrize(
    ("image_shape", "mask_shape", "message"),
    [((4, 5, 6, 1), (4, 5, 6, 1), "3D"), ((4, 5, 6), (4, 5, 7), "differs from image shape")],
)
def test_bad_inputs_are_named(image_shape, mask_shape, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        orthogonal_views(np.zeros(image_shape), np.eye(4), np.zeros(mask_shape, np.uint8))


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR", "ASL"])
def test_each_panel_shows_right_anterior_superior_where_its_letters_say(codes: str) -> None:
    """A marker right and superior, anterior and superior, right and anterior of the atrium in each panel's plane
    lies up and to the left of the atrium: the letters R/A on the left, S/A on top (radiological convention)."""
    affine = affine_for(codes)
    case = synthetic_case(tuple(SHAPE[RAS_AXIS[c]] for c in codes), affine, seed=7)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in case.label.shape], indexing="ij"), axis=-1)
    r, a, s = np.moveaxis(ijk @ affine[:3, :3].T + affine[:3, 3] - world_centroid(case.label, affine), -1, 0)
    marker = ((a > 4) & (s > 4)) | ((r > 4) & (s > 4)) | ((r > 4) & (a > 4))  # one quadrant in each plane
    views = orthogonal_views(marker.astype(np.float32), affine, case.label)
    for panel in views.panels:
        bright, atrium = np.argwhere(panel.image > 0.5).mean(0), np.argwhere(panel.prediction).mean(0)
        assert bright[0] < atrium[0] and bright[1] < atrium[1], (panel.name, panel.sides, bright, atrium)
