"""The classic 2D U-Net: the reference size, what each output pixel sees, skips that carry detail, raw logits."""

from __future__ import annotations

import pytest
import torch

from atriumseg.models.card import BUILT_IN
from atriumseg.models.checkpoint import build_network
from atriumseg.models.unet import UNet

# (depth, pixels seen before and after the output pixel along each axis): the receptive field, which a
# deeper network widens (at depth 4 it spans 92 pixels, 115 mm at the built-in 1.25 mm).
RECEPTIVE_FIELDS = [(2, 8, 9), (3, 22, 21), (4, 46, 45)]


def _parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def test_reference_network_has_7696193_parameters() -> None:
    assert _parameters(UNet(in_channels=1, width=64, depth=4)) == 7_696_193


def test_built_in_design_has_about_a_quarter_of_the_reference_parameters() -> None:
    """Half the width, a quarter of the weights; the 4 neighbour channels add 4 x 9 x 32 to the first layer."""
    network = build_network(BUILT_IN)
    assert network.inc[0].in_channels == 5
    assert _parameters(network) == _parameters(UNet(in_channels=1, width=32, depth=4)) + 1152 == 1_926_177


@pytest.mark.parametrize(("depth", "before", "after"), RECEPTIVE_FIELDS)
def test_each_output_pixel_sees_exactly_its_receptive_field(depth: int, before: int, after: int) -> None:
    torch.manual_seed(depth)
    network = UNet(in_channels=1, width=4, depth=depth).double()
    x = torch.randn(1, 1, 128, 128, dtype=torch.float64, requires_grad=True)
    network(x)[0, 0, 64, 64].backward()
    seen = (x.grad[0, 0].abs() > 0).nonzero()
    assert seen.min(0).values.tolist() == [64 - before] * 2
    assert seen.max(0).values.tolist() == [64 + after] * 2


def test_a_change_outside_the_receptive_field_leaves_the_output_untouched() -> None:
    torch.manual_seed(0)
    network = UNet(in_channels=2, width=4, depth=3).eval()
    x = torch.randn(1, 2, 96, 96)
    changed = x.clone()
    changed[..., 70:, 70:] += 5.0
    with torch.no_grad():
        before, after = network(x), network(changed)
    torch.testing.assert_close(before[..., :70 - 21, :], after[..., :70 - 21, :], rtol=0, atol=0)
    assert not torch.allclose(before[..., 70:, 70:], after[..., 70:, 70:])


def test_skip_connections_carry_full_resolution_detail_past_a_silenced_bottleneck() -> None:
    """With every weight below the first level zeroed, only the skip at full resolution reaches the output."""
    torch.manual_seed(1)
    network = UNet(in_channels=1, width=4, depth=3).eval()
    with torch.no_grad():
        for p in network.downs.parameters():
            p.zero_()
        x = torch.zeros(1, 1, 32, 32)
        x[0, 0, 15, 15] = 10.0
        y = network(x) - network(torch.zeros_like(x))
    changed = (y[0, 0].abs() > 1e-6).nonzero()
    assert len(changed) > 0
    # two 3x3 convolutions before the skip and two after it: a point spreads at most 4 pixels
    assert changed.min().item() >= 15 - 4 and changed.max().item() <= 15 + 4


def test_output_is_raw_logits_not_probabilities() -> None:
    network = UNet(in_channels=1, width=4, depth=2).eval()
    with torch.no_grad():
        network.outc.weight.zero_()
        network.outc.bias.fill_(-3.0)
        y = network(torch.rand(1, 1, 16, 16))
    torch.testing.assert_close(y, torch.full((1, 1, 16, 16), -3.0))


@pytest.mark.parametrize(("depth", "size"), [(2, 18), (3, 20), (4, 24)])
def test_slices_divisible_by_the_divisor_keep_their_size_and_others_are_refused(depth: int, size: int) -> None:
    network = UNet(in_channels=1, width=2, depth=depth).eval()
    assert network.divisor == 2 ** (depth - 1) and size % network.divisor == 0
    with torch.no_grad():
        assert network(torch.zeros(2, 1, size, size + network.divisor)).shape == (2, 1, size, size + network.divisor)
        with pytest.raises(RuntimeError):
            network(torch.zeros(1, 1, size + 1, size))


@pytest.mark.parametrize(("kwargs", "message"), [({"depth": 1}, "depth"), ({"width": 0}, "width"),
                                                  ({"in_channels": 0}, "in_channels")])
def test_invalid_shapes_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)
