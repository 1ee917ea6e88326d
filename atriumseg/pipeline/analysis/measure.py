"""Size, shape and position of a segmented atrium in world units: mL, mm² and RAS mm.

Voxel centres and the surface are mapped through the affine before anything is measured, so the
same anatomy gives the same numbers on any voxel grid, spacing or orientation.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atriumseg.pipeline.analysis.mesh import Mesh, check_mask, mesh
from atriumseg.pipeline.io.geometry import voxel_volume_ml
from atriumseg.pipeline.io.volumes import ImageReadError, read_image
from atriumseg.pipeline.io.writing import refuse_existing, write_atomically

CSV_COLUMNS = (
    "case", "volume_ml", "surface_area_mm2", "sphericity", "axis_1_mm", "axis_2_mm", "axis_3_mm",
    "centroid_r_mm", "centroid_a_mm", "centroid_s_mm",
)


@dataclass(frozen=True)
class Measurements:
    """Size, shape and position of one mask in world units.

    ``volume_ml`` counts voxels times the voxel volume. ``surface_area_mm2`` is the area of the
    smoothed marching-cubes surface of :func:`atriumseg.pipeline.analysis.mesh.mesh`. ``sphericity`` is
    pi^(1/3) (6V)^(2/3) / A: 1 for a sphere, less for any other shape. ``axis_lengths_mm`` are the
    full lengths 2a, 2b, 2c, largest first, of the solid ellipsoid with the same second moments as
    the mask: sqrt(20 * eigenvalue) of the covariance of its voxel centres in mm, since a solid
    ellipsoid's variance along a semi-axis a is a²/5. ``centroid_ras_mm`` is the mean voxel centre.

    An empty mask has volume, area and axis lengths 0, and NaN sphericity and centroid.

    ``bsa_m2`` (Mosteller) and ``lavi_ml_m2`` (volume over BSA) are NaN unless a plausible height and
    weight were given (:func:`atriumseg.measure`); they are not among the CSV columns.
    """

    volume_ml: float
    surface_area_mm2: float
    sphericity: float
    axis_lengths_mm: tuple[float, float, float]
    centroid_ras_mm: tuple[float, float, float]
    bsa_m2: float = math.nan
    lavi_ml_m2: float = math.nan

    def row(self) -> dict[str, float]:
        """The measurements flattened under the names of :data:`CSV_COLUMNS` (without ``case``)."""
        values = (self.volume_ml, self.surface_area_mm2, self.sphericity, *self.axis_lengths_mm, *self.centroid_ras_mm)
        return dict(zip(CSV_COLUMNS[1:], values, strict=True))


def measure(mask: np.ndarray, affine: np.ndarray, surface: Mesh | None = None) -> Measurements:
    """Measure ``mask > 0`` (a 3D array in (x, y, z) order) with its 4x4 voxel-to-RAS ``affine``.

    ``surface``: the mask's :func:`~atriumseg.pipeline.analysis.mesh.mesh` when the caller has made it already
    (in either frame: the area is the same), so it is not made twice.
    """
    foreground, affine = check_mask(mask, affine)
    ijk = np.argwhere(foreground)
    if len(ijk) == 0:
        return Measurements(0.0, 0.0, math.nan, (0.0, 0.0, 0.0), (math.nan, math.nan, math.nan))
    linear = affine[:3, :3]
    xyz = ijk @ linear.T + affine[:3, 3]
    volume_mm3 = len(ijk) * voxel_volume_ml(affine) * 1000.0
    area_mm2 = (surface or mesh(foreground, affine)).area_mm2
    variances = np.linalg.eigvalsh(np.cov(xyz, rowvar=False, bias=True))[::-1]
    lengths = np.sqrt(20.0 * np.clip(variances, 0.0, None))
    centre = xyz.mean(axis=0)
    return Measurements(
        volume_ml=volume_mm3 / 1000.0,
        surface_area_mm2=area_mm2,
        sphericity=math.pi ** (1 / 3) * (6.0 * volume_mm3) ** (2 / 3) / area_mm2,
        axis_lengths_mm=(float(lengths[0]), float(lengths[1]), float(lengths[2])),
        centroid_ras_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
    )


def measure_file(path: Path) -> Measurements:
    """Measure the mask stored at ``path`` (NIfTI, NRRD, MHA/MHD or a DICOM folder); voxels above 0 count. A file
    that is not a mask (see :func:`~atriumseg.pipeline.analysis.mesh.check_mask`) is an :class:`ImageReadError`
    naming it."""
    volume = read_image(Path(path))
    try:
        return measure(volume.tensor[0].numpy(), np.asarray(volume.tensor.affine, dtype=np.float64))
    except ValueError as err:
        raise ImageReadError(f"{path}: {err}") from err


def write_measurements_csv(rows: list[tuple[str, Measurements]], path: Path, overwrite: bool = False) -> Path:
    """Write one line per ``(case name, measurements)`` under the header :data:`CSV_COLUMNS`, with
    full float precision; atomically (a temporary file in the same folder, then a rename), never over an
    existing file unless ``overwrite``."""
    path = Path(path)
    refuse_existing(path, overwrite)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, m in rows:
        writer.writerow([name, *m.row().values()])
    csv_text = text.getvalue()  # backslashreplace: a file name undecodable in UTF-8 is escaped, never fatal
    return write_atomically(path, lambda tmp: tmp.write_text(csv_text, encoding="utf-8", errors="backslashreplace"),
                            overwrite)
