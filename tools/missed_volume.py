"""Where a mask's volume differs from its reference: how much it misses and adds, how deep the missed part lies
beyond the mask's surface (a thin shell or whole structures such as vein trunks), and on which side of the atrium:

    python tools/missed_volume.py ../shared/data/Task02_Heart_cropped/labelsTr/la_019.nii.gz \\
        runs/la019/la_019.nii.gz --axes ASL

``--axes`` names the voxel axes where the header is wrong (MSD Task02's voxels run A, S, L: see
``KNOWN_ORIENTATIONS``); otherwise the header's axis codes name them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes
from scipy import ndimage

OPPOSITE = dict(zip("RLAPSI", "LRPAIS", strict=True))


def missed_volume(truth: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], axes: str,
                  near_mm: float = 5.0) -> dict:
    """Volumes in mL of the reference ``truth``, the ``mask``, what the mask misses (split into what lies within
    ``near_mm`` of it and beyond; the median distance of a missed voxel from the mask) and adds, and the missed
    volume on each side of the reference's centre along each voxel axis, named by ``axes`` (the letter each axis
    runs towards)."""
    truth, mask = truth > 0, mask > 0
    ml = float(np.prod(spacing)) / 1000.0
    missed = truth & ~mask
    depth = ndimage.distance_transform_edt(~mask, sampling=spacing)
    centre = ndimage.center_of_mass(truth)
    sides = {}
    for axis, (letter, index) in enumerate(zip(axes, np.nonzero(missed), strict=True)):
        sides[letter] = float((index > centre[axis]).sum()) * ml
        sides[OPPOSITE[letter]] = float((index < centre[axis]).sum()) * ml
    return {"reference": truth.sum() * ml, "mask": mask.sum() * ml, "missed": missed.sum() * ml,
            "missed_near": (missed & (depth <= near_mm)).sum() * ml, "added": (mask & ~truth).sum() * ml,
            "median_depth": float(np.median(depth[missed])) if missed.any() else 0.0, "sides": sides}


def describe(name: str, figures: dict, axes: str, near_mm: float) -> str:
    """The figures of :func:`missed_volume` as three lines of text."""
    error = 100.0 * (figures["mask"] - figures["reference"]) / figures["reference"]
    sides = figures["sides"]
    return "\n".join([
        f"{name}: reference {figures['reference']:.1f} mL, mask {figures['mask']:.1f} mL ({error:+.1f}%); "
        f"missed {figures['missed']:.1f} mL, added {figures['added']:.1f} mL",
        f"  missed within {near_mm:g} mm of the mask {figures['missed_near']:.1f} mL, "
        f"beyond {figures['missed'] - figures['missed_near']:.1f} mL; median depth {figures['median_depth']:.1f} mm",
        "  missed by side of the reference's centre: " + ", ".join(
            f"{OPPOSITE[letter]} {sides[OPPOSITE[letter]]:.1f} / {letter} {sides[letter]:.1f} mL" for letter in axes),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="the reference label")
    parser.add_argument("mask", type=Path, help="the mask, on the reference's grid")
    parser.add_argument("--axes", help="the letters the voxel axes run towards (default: the header's)")
    parser.add_argument("--near", type=float, default=5.0, help="mm from the mask that count as its surface")
    args = parser.parse_args()
    reference, mask = nib.load(args.reference), nib.load(args.mask)
    if reference.shape != mask.shape:
        parser.error(f"the mask's grid {mask.shape} is not the reference's {reference.shape}")
    axes = args.axes or "".join(aff2axcodes(reference.affine))
    figures = missed_volume(np.asanyarray(reference.dataobj), np.asanyarray(mask.dataobj),
                            tuple(float(z) for z in reference.header.get_zooms()[:3]), axes, args.near)
    print(describe(args.mask.name.split(".")[0], figures, axes, args.near))


if __name__ == "__main__":
    main()
