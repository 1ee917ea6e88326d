"""2.5D context: neighbouring slices stacked as channels, the edge slice repeated; as a copy, or as a view of a
volume padded with its edge slices (training's cache)."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import BorderPad

from atriumseg.transforms.context import NeighbourView, StackNeighbours


def test_stacking_chosen_slices_equals_stacking_all_then_choosing() -> None:
    volume = torch.rand(1, 9, 6, 7)
    stack = StackNeighbours(slice_dim=1, context=2)
    everything = stack(volume)
    assert everything.shape == (5, 9, 6, 7)
    torch.testing.assert_close(everything[0, :, 0], volume[0, :, 0])  # edge slice repeated twice below
    torch.testing.assert_close(everything[4, :, 3], volume[0, :, 5])
    chosen = torch.tensor([0, 3, 5])
    torch.testing.assert_close(stack(volume[..., 1:4], chosen), everything.index_select(2, chosen)[..., 1:4])


@pytest.mark.parametrize(("slice_dim", "context"), [(0, 1), (1, 2), (2, 2), (2, 0)])
def test_the_view_of_an_edge_padded_volume_is_the_stack_of_the_volume_without_copying(slice_dim, context) -> None:
    volume = torch.rand(1, 7, 6, 5)
    edges = [0] * 6
    edges[2 * slice_dim] = edges[2 * slice_dim + 1] = context
    padded = BorderPad(spatial_border=edges, mode="edge")(volume)
    view = NeighbourView(slice_dim, context)(padded)
    assert torch.equal(view, StackNeighbours(slice_dim, context)(volume))
    assert view.untyped_storage().data_ptr() == padded.untyped_storage().data_ptr(), "a view, not a copy"


def test_the_view_refuses_a_stack() -> None:
    with pytest.raises(ValueError, match="one channel, got 3"):
        NeighbourView(0, 1)(torch.rand(3, 4, 4, 4))
