"""One network of a Segmenter: its probabilities on the input grid and the world box it hands to other members."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from torch import nn

from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.pipeline.inference.member import Member
from atriumseg.synthetic import make_affine

SHAPE = (40, 44, 36)
CARD = ModelCard(
    architecture=Architecture(in_channels=1, width=8, depth=3),
    preprocessing=Preprocessing(orientation="RAS", plane="coronal", spacing=(1.0, 1.0), context=0, slice_spacing=1.0,
                                min_slice_size=0),
    postprocessing=Postprocessing(threshold=0.5, largest_component=True),
)


class Bright(nn.Module):
    """Logit +20 where the slice is bright (scaled above 0.5), -20 elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 80.0 * (x - 0.5)


@pytest.mark.parametrize("focus", [False, True])
def test_probabilities_land_on_the_input_grid_and_the_box_encloses_them_in_world_mm(focus: bool) -> None:
    affine = torch.from_numpy(make_affine(SHAPE, (1.0, 1.0, 1.0), "LPS"))
    image = torch.zeros((1, *SHAPE))
    image[0, 10:20, 12:30, 8:15] = 100.0
    member = Member(Bright(), CARD, torch.device("cpu"), batch_size=8, precision="float32", focus=focus)
    tensor = MetaTensor(image, affine=affine)
    prob, corners = member.probabilities(member.frame(tensor), tensor, tta=False, floor=0.01)
    assert torch.equal(prob[0] > 0.5, image[0] > 0)
    ends = ((10, 19), (12, 29), (8, 14))  # first and last voxel of the bright box on each axis
    voxels = torch.cartesian_prod(*[torch.tensor(pair, dtype=torch.float64) for pair in ends])
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    assert corners is not None
    low, high = corners.min(0).values, corners.max(0).values
    assert torch.allclose(low, world.min(0).values - 0.5) and torch.allclose(high, world.max(0).values + 0.5)


@pytest.mark.filterwarnings("ignore:Divide by zero")  # MONAI's intensity window of a constant image
def test_nothing_found_gives_no_box() -> None:
    member = Member(Bright(), CARD, torch.device("cpu"), batch_size=8, precision="float32", focus=True)
    tensor = MetaTensor(torch.zeros((1, *SHAPE)))
    prob, corners = member.probabilities(member.frame(tensor), tensor, tta=False, floor=0.01)
    assert not prob.any() and corners is None
