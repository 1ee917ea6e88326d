"""2.5D context: neighbouring slices stacked as channels, the edge slice repeated."""

from __future__ import annotations

import torch

from atriumseg.transforms.context import StackNeighbours


def test_stacking_chosen_slices_equals_stacking_all_then_choosing() -> None:
    volume = torch.rand(1, 9, 6, 7)
    stack = StackNeighbours(slice_dim=1, context=2)
    everything = stack(volume)
    assert everything.shape == (5, 9, 6, 7)
    torch.testing.assert_close(everything[0, :, 0], volume[0, :, 0])  # edge slice repeated twice below
    torch.testing.assert_close(everything[4, :, 3], volume[0, :, 5])
    chosen = torch.tensor([0, 3, 5])
    torch.testing.assert_close(stack(volume[..., 1:4], chosen), everything.index_select(2, chosen)[..., 1:4])
