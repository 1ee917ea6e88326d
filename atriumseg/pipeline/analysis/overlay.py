"""Quality-control pictures: three orthogonal slices of a case with its mask contours (and a reference's, when
given), so a reviewer can spot a failed segmentation at a glance. The batch's contact sheet of many cases
is :mod:`atriumseg.pipeline.batch.qc`; the demo draws its overlay here too.

Volumes are first permuted and flipped to the closest RAS axis order (no resampling), so the panels are
sagittal, coronal and axial whatever the stored orientation, and are drawn in radiological convention
with their physical aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from atriumseg.geometry import voxel_spacing
from atriumseg.pipeline.io.writing import write_atomically

PREDICTION_COLOUR = (1.0, 0.2, 0.2)
TRUTH_COLOUR = (0.1, 0.85, 0.25)
FIGURE_SIZE_PX = (1200, 450)
CONVENTION = "radiological view: patient's right on screen left; sagittal seen from the left, anterior on screen left"

_DPI = 100
# Plane name, the canonical (RAS) axis held fixed, and the letters on its left, right, top and bottom edges.
_PLANES = (
    ("sagittal", 0, ("A", "P", "S", "I")),
    ("coronal", 1, ("R", "L", "S", "I")),
    ("axial", 2, ("R", "L", "A", "P")),
)


@dataclass(frozen=True)
class Panel:
    """One slice as drawn: row 0 at the top, column 0 at the left; ``aspect`` is a pixel's height / width."""

    name: str
    image: np.ndarray
    prediction: np.ndarray
    truth: np.ndarray | None
    aspect: float
    sides: tuple[str, str, str, str]


@dataclass(frozen=True)
class OrthogonalViews:
    """Sagittal, coronal and axial panels, and the world point (RAS mm) where their planes cross."""

    panels: tuple[Panel, Panel, Panel]
    cut_mm: tuple[float, float, float]


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``array`` with its axes permuted and flipped to the closest RAS order, and the matching affine.

    No resampling: an oblique volume keeps its voxels and gets the nearest anatomical axis order.
    """
    ornt = io_orientation(affine)
    return apply_orientation(array, ornt), affine @ inv_ornt_aff(ornt, array.shape)


def cut_index(mask: np.ndarray) -> tuple[int, int, int]:
    """The voxel where the three planes cross: the mask's centroid, or the volume centre when it is empty."""
    points = np.argwhere(mask)
    centre = points.mean(axis=0) if len(points) else (np.asarray(mask.shape) - 1) / 2
    return tuple(int(c) for c in np.rint(centre))


def _check_inputs(image: np.ndarray, affine: np.ndarray, masks: dict[str, np.ndarray | None]) -> None:
    if image.ndim != 3:
        raise ValueError(f"image must be a 3D array (x, y, z), got shape {image.shape}; drop channel axes first")
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 voxel-to-RAS matrix, got shape {affine.shape}")
    for name, mask in masks.items():
        if mask is not None and mask.shape != image.shape:
            raise ValueError(
                f"{name} shape {mask.shape} differs from image shape {image.shape}; "
                "resample the mask onto the image grid first"
            )


def orthogonal_views(
    image: np.ndarray, affine: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None
) -> OrthogonalViews:
    """Sagittal, coronal and axial slices through the prediction's centroid, oriented for display.

    Arrays are (x, y, z) with a voxel-to-RAS ``affine``; masks share the image grid.
    """
    image, affine = np.asarray(image), np.asarray(affine, dtype=np.float64)
    prediction = np.asarray(prediction) > 0
    truth = None if truth is None else np.asarray(truth) > 0
    _check_inputs(image, affine, {"prediction": prediction, "truth": truth})
    image_ras, affine_ras = to_canonical(image, affine)
    prediction_ras = to_canonical(prediction, affine)[0]
    truth_ras = None if truth is None else to_canonical(truth, affine)[0]
    spacing = voxel_spacing(affine_ras)
    cut = cut_index(prediction_ras)

    def shown(array: np.ndarray, axis: int) -> np.ndarray:
        # The remaining axes are (horizontal, vertical); put the vertical one on rows, S/A at the top, R/A left.
        return np.take(array, cut[axis], axis=axis).T[::-1, ::-1]

    panels = []
    for name, axis, sides in _PLANES:
        horizontal, vertical = (a for a in range(3) if a != axis)
        panels.append(
            Panel(
                name=name,
                image=shown(image_ras, axis),
                prediction=shown(prediction_ras, axis),
                truth=None if truth_ras is None else shown(truth_ras, axis),
                aspect=float(spacing[vertical] / spacing[horizontal]),
                sides=sides,
            )
        )
    cut_mm = affine_ras[:3, :3] @ np.asarray(cut, dtype=np.float64) + affine_ras[:3, 3]
    return OrthogonalViews(panels=tuple(panels), cut_mm=tuple(float(c) for c in cut_mm))


def _window(image: np.ndarray) -> tuple[float, float]:
    """Grey-level limits from the 1st and 99th percentiles, robust to a few very bright or dark voxels."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    return low, high if high > low else low + 1.0


def _draw_panel(ax: Axes, panel: Panel, window: tuple[float, float]) -> None:
    rows, cols = panel.image.shape
    ax.imshow(panel.image, cmap="gray", vmin=window[0], vmax=window[1], aspect=panel.aspect, interpolation="nearest")
    for mask, colour in ((panel.truth, TRUTH_COLOUR), (panel.prediction, PREDICTION_COLOUR)):
        if mask is not None and mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.5)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(panel.name, fontsize=9, pad=3)
    label = dict(color="white", fontsize=10, fontweight="bold", transform=ax.transAxes)
    box = dict(facecolor="black", alpha=0.5, edgecolor="none", pad=1)
    left, right, top, bottom = panel.sides
    ax.text(0.01, 0.5, left, ha="left", va="center", bbox=box, **label)
    ax.text(0.99, 0.5, right, ha="right", va="center", bbox=box, **label)
    ax.text(0.5, 0.99, top, ha="center", va="top", bbox=box, **label)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", bbox=box, **label)


def overlay_png(
    image: np.ndarray,
    affine: np.ndarray,
    prediction: np.ndarray,
    path: Path,
    truth: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """A 1200x450 PNG of sagittal, coronal and axial slices through the prediction's centroid, with its
    contour (and the truth's, when given), a legend and ``title``; replaces ``path`` atomically.

    The grey levels span the volume's 1st to 99th percentiles; the panels keep the voxel spacing's aspect.
    """
    views = orthogonal_views(image, affine, prediction, truth)
    window = _window(np.asarray(image))
    width, height = FIGURE_SIZE_PX
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    ratios = [p.image.shape[1] / (p.image.shape[0] * p.aspect) for p in views.panels]
    axes = fig.subplots(
        1, 3, gridspec_kw=dict(width_ratios=ratios, left=0.01, right=0.99, bottom=0.02, top=0.84, wspace=0.04)
    )
    for ax, panel in zip(axes, views.panels, strict=True):
        _draw_panel(ax, panel, window)
    x, y, z = views.cut_mm
    fig.text(0.01, 0.975, title, ha="left", va="top", fontsize=12, fontweight="bold")
    fig.text(0.01, 0.905, f"{CONVENTION}; planes cross at ({x:.1f}, {y:.1f}, {z:.1f}) mm RAS", fontsize=8, va="top")
    handles = [Line2D([], [], color=PREDICTION_COLOUR, linewidth=2, label="prediction")]
    if truth is not None:
        handles.append(Line2D([], [], color=TRUTH_COLOUR, linewidth=2, label="truth"))
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.99), ncol=len(handles), frameon=False)
    return write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white"))
