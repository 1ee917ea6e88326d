"""How bright each case's atrium is once a model's preprocessing has scaled it: the median of the scaled intensities
inside the reference label, and of its rim (the voxels within ``--rim`` voxels outside it: wall, fat, neighbours),
in the first member's frame (orientation, grid, cap, window), lowest first:

    python tools/atrium_level.py ../shared/data/Task02_Heart_cropped ../shared/data/LA2018_LGE --lowest 5

A case far below its dataset's others shows its atrium in grey levels the network rarely trains on, and one whose
atrium is darker than its rim (a ratio below 1) shows the contrast reversed (the dark scan of the 2018 challenge's
LGE cases: see docs/model_history.md). Datasets are read as training reads them,
with the header fixes known to the project.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import NamedTuple

import torch
from monai.transforms import Compose
from scipy import ndimage

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_card, resolve_model_path
from atriumseg.models.ensemble import first_member
from atriumseg.pipeline.training.dataset import LabelledCase, load_msd_dataset
from atriumseg.transforms.augmentation import labelled_reading
from atriumseg.transforms.preprocessing import IMAGE, LABEL, frame_transforms


def first_card(model: Path | None) -> ModelCard:
    """The card of a model folder, or of an ensemble's first member (the one that frames the volume first)."""
    return load_card(first_member(resolve_model_path(model)))


class Level(NamedTuple):
    """A case's scaled intensities: quartiles inside its label and the median on its rim."""

    low: float
    median: float
    high: float
    rim: float


def atrium_level(case: LabelledCase, card: ModelCard, orientation: str | None, rim: int = 2) -> Level:
    """The 25th, 50th and 75th percentiles of ``case``'s scaled intensities inside its label, in ``card``'s frame,
    and the median of those on its rim (within ``rim`` voxels outside it, 6-connected steps)."""
    chain = Compose([*labelled_reading(orientation), *frame_transforms(card, LABEL)])
    framed = chain({IMAGE: str(case.image), LABEL: str(case.label)})
    image, label = framed[IMAGE].as_tensor()[0], framed[LABEL].as_tensor()[0].numpy() > 0.5
    outside = torch.from_numpy(ndimage.binary_dilation(label, iterations=rim) & ~label)
    if not label.any() or not outside.any():
        raise ValueError(f"{case.name}: its label is empty or fills the volume")
    low, mid, high = torch.quantile(image[torch.from_numpy(label)], torch.tensor([0.25, 0.5, 0.75])).tolist()
    return Level(low, mid, high, float(torch.quantile(image[outside], 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="dataset folders in the MSD layout")
    parser.add_argument("-m", "--model", type=Path, help="the model whose preprocessing scales (default: built-in)")
    parser.add_argument("--lowest", type=int, default=0, help="list only this many lowest cases per dataset")
    parser.add_argument("--rim", type=int, default=2, help="the rim's width in voxels of the model's grid")
    args = parser.parse_args()
    card = first_card(args.model)
    for root in args.datasets:
        dataset = load_msd_dataset(root)
        levels = sorted(((atrium_level(case, card, dataset.orientation, args.rim), case.name)
                         for case in dataset.cases), key=lambda item: item[0].median)
        medians = [level.median for level, _ in levels]
        ratios = sorted((level.median / level.rim, name) for level, name in levels)
        print(f"{dataset.name}: {len(levels)} cases, the atrium's median scaled intensity: median over cases "
              f"{statistics.median(medians):.3f}, lowest {medians[0]:.3f} ({levels[0][1]}); atrium over rim: median "
              f"{statistics.median(r for r, _ in ratios):.2f}, lowest {ratios[0][0]:.2f} ({ratios[0][1]}), "
              f"{sum(r < 1.0 for r, _ in ratios)} below 1")
        for level, name in levels[:args.lowest or None]:
            print(f"  {name}: {level.median:.3f} (quartiles {level.low:.3f}-{level.high:.3f}), rim {level.rim:.3f}, "
                  f"atrium over rim {level.median / level.rim:.2f}")


if __name__ == "__main__":
    main()
