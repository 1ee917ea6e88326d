"""How bright each case's atrium is once a model's preprocessing has scaled it: the median of the scaled intensities
inside the reference label, and of its rim (the voxels within ``--rim`` voxels outside it: wall, fat, neighbours),
in the first member's frame (orientation, grid, cap, window), lowest first:

    python tools/atrium_level.py ../shared/data/Task02_Heart_cropped ../shared/data/LA2018_LGE --lowest 5

A case far below its dataset's others shows its atrium in grey levels the network rarely trains on, and one whose
atrium is darker than its rim (a ratio below 1) shows the contrast reversed (the dark scan of the 2018 challenge's
LGE cases: see docs/model_history.md). ``--profile`` adds the grey level across the reference's edge: the median on
each shell of voxels 1 to 3 steps inside and outside it, over the atrium's core (deeper than 3 steps), for the cases
listed and, as a median per shell, for the dataset. Datasets are read as training reads them,
with the header fixes known to the project.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from monai.transforms import Compose
from scipy import ndimage

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_card, resolve_model_path
from atriumseg.models.ensemble import first_member
from atriumseg.pipeline.training.dataset import LabelledCase, load_msd_dataset
from atriumseg.transforms.augmentation import labelled_reading
from atriumseg.transforms.preprocessing import IMAGE, LABEL, frame_transforms

PROFILE_REACH = 3  # voxel steps each side of the edge that --profile reads


def first_card(model: Path | None) -> ModelCard:
    """The card of a model folder, or of an ensemble's first member (the one that frames the volume first)."""
    return load_card(first_member(resolve_model_path(model)))


class Level(NamedTuple):
    """A case's scaled intensities: quartiles inside its label and the median on its rim."""

    low: float
    median: float
    high: float
    rim: float


def framed(case: LabelledCase, card: ModelCard, orientation: str | None) -> tuple[torch.Tensor, np.ndarray]:
    """``case``'s scaled image and its label as a boolean array, in ``card``'s frame."""
    chain = Compose([*labelled_reading(orientation), *frame_transforms(card, LABEL)])
    frame = chain({IMAGE: str(case.image), LABEL: str(case.label)})
    return frame[IMAGE].as_tensor()[0], frame[LABEL].as_tensor()[0].numpy() > 0.5


def atrium_level(image: torch.Tensor, label: np.ndarray, rim: int = 2) -> Level:
    """The 25th, 50th and 75th percentiles of the scaled ``image`` inside ``label``, and the median of those on its
    rim (within ``rim`` voxels outside it, 6-connected steps)."""
    outside = torch.from_numpy(ndimage.binary_dilation(label, iterations=rim) & ~label)
    if not label.any() or not outside.any():
        raise ValueError("the label is empty or fills the volume")
    low, mid, high = torch.quantile(image[torch.from_numpy(label)], torch.tensor([0.25, 0.5, 0.75])).tolist()
    return Level(low, mid, high, float(torch.quantile(image[outside], 0.5)))


def edge_profile(image: torch.Tensor, label: np.ndarray, reach: int = PROFILE_REACH) -> list[float]:
    """The median of ``image`` on each shell ``reach`` to 1 voxel steps inside ``label``'s edge, then 1 to ``reach``
    outside it (6-connected steps), each over the median of the core deeper inside: where the grey level rises or
    falls against where the reference draws the edge."""
    inside = ndimage.distance_transform_cdt(label, metric="taxicab")
    outside = ndimage.distance_transform_cdt(~label, metric="taxicab")
    values = image.numpy()
    core = label & (inside > reach)
    if not core.any():
        raise ValueError(f"the label has no voxel deeper than {reach} steps")
    shells = [label & (inside == d) for d in range(reach, 0, -1)] + [outside == d for d in range(1, reach + 1)]
    return [float(np.median(values[shell]) / np.median(values[core])) for shell in shells]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="dataset folders in the MSD layout")
    parser.add_argument("-m", "--model", type=Path, help="the model whose preprocessing scales (default: built-in)")
    parser.add_argument("--lowest", type=int, default=0, help="list only this many lowest cases per dataset")
    parser.add_argument("--rim", type=int, default=2, help="the rim's width in voxels of the model's grid")
    parser.add_argument("--profile", action="store_true", help="also print the grey level across the edge")
    args = parser.parse_args()
    card = first_card(args.model)
    for root in args.datasets:
        dataset = load_msd_dataset(root)
        rows = []
        for case in dataset.cases:
            image, label = framed(case, card, dataset.orientation)
            try:
                rows.append((atrium_level(image, label, args.rim), case.name,
                             edge_profile(image, label) if args.profile else []))
            except ValueError as error:
                raise ValueError(f"{case.name}: {error}") from error
        rows.sort(key=lambda row: row[0].median)
        medians = [level.median for level, _, _ in rows]
        ratios = sorted((level.median / level.rim, name) for level, name, _ in rows)
        print(f"{dataset.name}: {len(rows)} cases, the atrium's median scaled intensity: median over cases "
              f"{statistics.median(medians):.3f}, lowest {medians[0]:.3f} ({rows[0][1]}); atrium over rim: median "
              f"{statistics.median(r for r, _ in ratios):.2f}, lowest {ratios[0][0]:.2f} ({ratios[0][1]}), "
              f"{sum(r < 1.0 for r, _ in ratios)} below 1")
        if args.profile:
            typical = [statistics.median(shell) for shell in zip(*(profile for _, _, profile in rows), strict=True)]
            print(f"  across the edge ({PROFILE_REACH} to 1 steps inside, 1 to {PROFILE_REACH} outside), over the "
                  f"core: median over cases {_shells(typical)}")
        for level, name, profile in rows[:args.lowest or None]:
            print(f"  {name}: {level.median:.3f} (quartiles {level.low:.3f}-{level.high:.3f}), rim {level.rim:.3f}, "
                  f"atrium over rim {level.median / level.rim:.2f}" + (f"; across the edge {_shells(profile)}"
                                                                        if profile else ""))


def _shells(profile: list[float]) -> str:
    """A profile as text, the edge marked between its inner and outer halves."""
    half = len(profile) // 2
    return " ".join(f"{v:.2f}" for v in profile[:half]) + " | " + " ".join(f"{v:.2f}" for v in profile[half:])


if __name__ == "__main__":
    main()
