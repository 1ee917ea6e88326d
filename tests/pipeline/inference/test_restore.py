"""Probabilities back on the input grid through the affines alone, checked against MONAI's inverse of the chain."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from monai.data import MetaTensor

from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.pipeline.inference.regions import translation
from atriumseg.pipeline.inference.restore import restore, to_input_grid
from atriumseg.synthetic import make_affine
from atriumseg.transforms.preprocessing import IMAGE, inference_transforms

CARD = ModelCard(
    architecture=Architecture(in_channels=3, width=8, depth=4),
    preprocessing=Preprocessing(plane="sagittal", spacing=(1.5, 1.5), context=1, slice_spacing=0.0, min_slice_size=0),
    postprocessing=Postprocessing(threshold=0.5, largest_component=True),
)
GRIDS = [((40, 52, 30), (1.1, 0.9, 2.3), "PIR", (10, -8, 5)), ((37, 45, 29), (0.7, 1.3, 1.6), "LPS", (0, 0, 0))]


@pytest.mark.parametrize("min_slice_size", [0, 64])
@pytest.mark.parametrize(("shape", "spacing", "codes", "rotation"), GRIDS)
def test_probabilities_return_to_the_input_grid_as_monai_inverts_the_chain(
    shape, spacing, codes, rotation, min_slice_size
) -> None:
    """A random probability map, outer faces included, matches MONAI's inverse of the preprocessing
    (grids that need resampling and padding, to the divisor and to a minimum slice size)."""
    image = MetaTensor(torch.rand((1, *shape)), affine=torch.from_numpy(make_affine(shape, spacing, codes, rotation)))
    card = replace(CARD, preprocessing=replace(CARD.preprocessing, min_slice_size=min_slice_size))
    chain = inference_transforms(card)
    prepared = chain({IMAGE: image})[IMAGE]
    if min_slice_size:
        assert min(n for d, n in enumerate(prepared.shape[1:]) if d != card.preprocessing.slice_dim) >= 64
    prob = torch.rand((1, *prepared.shape[1:]))
    tracked = MetaTensor(prob.clone(), meta=prepared.meta, applied_operations=prepared.applied_operations)
    expected = chain.inverse({IMAGE: tracked})[IMAGE].as_tensor()
    everywhere = tuple(slice(0, n) for n in prob.shape)
    restored = to_input_grid(prob, everywhere, prepared, image, floor=0.0)
    assert restored.shape == (1, *shape)
    torch.testing.assert_close(restored, expected, atol=1e-4, rtol=0)


def test_a_box_restored_onto_its_own_grid_is_itself_and_zero_a_voxel_beyond() -> None:
    """The resampled box may reach one voxel past the probabilities (rounding of its landed corners), never more."""
    affine = torch.from_numpy(make_affine((30, 32, 28), (1.2, 0.9, 1.7), "LPS", (5, 0, -10)))
    target = MetaTensor(torch.zeros((1, 30, 32, 28)), affine=affine)
    prob = torch.rand((1, 8, 9, 10), generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    restored = restore(prob, affine @ translation([10, 11, 12]), target, floor=0.01)
    torch.testing.assert_close(restored[0, 10:18, 11:20, 12:22], prob[0], atol=1e-5, rtol=0)
    restored[0, 9:19, 10:21, 11:23] = 0
    assert not restored.any(), "nothing a voxel beyond the box"


def test_probabilities_under_the_floor_are_zero() -> None:
    target = MetaTensor(torch.zeros((1, 20, 20, 20)), affine=torch.eye(4, dtype=torch.float64))
    assert not restore(torch.full((1, 5, 5, 5), 0.005), torch.eye(4, dtype=torch.float64), target).any()
