"""Growing a U-Net's weights: the wider or deeper network computes what the smaller one did."""

from __future__ import annotations

import pytest
import torch

from atriumseg.models.unet import UNet
from atriumseg.pipeline.training.widening import deepen, widen_context, widen_width


def _outputs(network: torch.nn.Module, slab: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network.eval()(slab)


@pytest.mark.parametrize(("width", "depth", "wider"), [(4, 3, 6), (4, 2, 4), (3, 4, 10)])
def test_a_widened_network_without_noise_computes_the_same(width: int, depth: int, wider: int) -> None:
    torch.manual_seed(0)
    narrow = UNet(in_channels=3, width=width, depth=depth)
    wide = UNet(in_channels=3, width=wider, depth=depth)
    wide.load_state_dict(widen_width(narrow.state_dict(), wider, noise=0.0))
    slab = torch.randn(2, 3, 32, 32)
    assert torch.allclose(_outputs(wide, slab), _outputs(narrow, slab), atol=1e-5)
    first = wide.state_dict()["inc.0.weight"]
    assert torch.equal(first[:width], narrow.state_dict()["inc.0.weight"]), "the model's channels come first"


def test_the_copies_noise_breaks_their_symmetry_and_keeps_the_function_close() -> None:
    torch.manual_seed(1)
    narrow = UNet(in_channels=1, width=4, depth=3)
    weights = widen_width(narrow.state_dict(), 8, generator=torch.Generator().manual_seed(2))
    copied = widen_width(narrow.state_dict(), 8, noise=0.0, generator=torch.Generator().manual_seed(2))
    first = weights["inc.0.weight"]
    assert torch.equal(first[:4], copied["inc.0.weight"][:4]), "noise only on the copies"
    assert not torch.equal(first[4:], copied["inc.0.weight"][4:])
    wide = UNet(in_channels=1, width=8, depth=3)
    wide.load_state_dict(weights)
    slab = torch.randn(2, 1, 32, 32)
    reference = _outputs(narrow, slab)
    assert 0 < (_outputs(wide, slab) - reference).abs().max() < 0.05 * reference.abs().max()


def test_each_channel_is_copied_once_before_any_twice() -> None:
    narrow = UNet(in_channels=1, width=4, depth=2).state_dict()
    wide = widen_width(narrow, 6, noise=0.0)["inc.0.weight"]
    copies = [next(i for i in range(4) if torch.equal(wide[k], narrow["inc.0.weight"][i])) for k in range(4, 6)]
    assert len(set(copies)) == 2


def test_narrowing_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot narrow a U-Net of width 8 to 4"):
        widen_width(UNet(in_channels=1, width=8, depth=2).state_dict(), 4)


def test_more_neighbour_slices_keep_the_model_in_the_middle() -> None:
    torch.manual_seed(3)
    narrow = UNet(in_channels=3, width=4, depth=2)
    wide = UNet(in_channels=5, width=4, depth=2)
    wide.load_state_dict(widen_context(narrow.state_dict(), 5))
    slab = torch.randn(2, 5, 16, 16)
    assert torch.allclose(_outputs(wide, slab), _outputs(narrow, slab[:, 1:4]), atol=1e-6)


@pytest.mark.parametrize(("width", "depth", "deeper"), [(4, 2, 3), (3, 3, 5), (4, 4, 4)])
def test_a_deepened_network_computes_the_same(width: int, depth: int, deeper: int) -> None:
    torch.manual_seed(4)
    shallow = UNet(in_channels=3, width=width, depth=depth)
    deep = UNet(in_channels=3, width=width, depth=deeper)
    weights = deepen(shallow.state_dict(), deeper)
    deep.load_state_dict(weights)
    slab = torch.randn(2, 3, 64, 64)
    assert torch.equal(_outputs(deep, slab), _outputs(shallow, slab))
    kept = {key: value for key, value in shallow.state_dict().items() if not key.startswith("ups.")}
    assert all(torch.equal(weights[key], value) for key, value in kept.items()), "the encoder is the model's"


def test_a_deepened_network_learns_the_new_level() -> None:
    torch.manual_seed(5)
    deep = UNet(in_channels=1, width=4, depth=3)
    deep.load_state_dict(deepen(UNet(in_channels=1, width=4, depth=2).state_dict(), 3))
    bottleneck = deep.state_dict()["downs.1.1.0.weight"].clone()
    optimizer = torch.optim.Adam(deep.parameters(), lr=1e-2)
    slab, target = torch.randn(2, 1, 32, 32), torch.rand(2, 1, 32, 32).round()
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(deep(slab), target).backward()
        optimizer.step()
    new_level = deep.state_dict()
    assert new_level["ups.0.conv.0.weight"][:, 8:].abs().max() > 0, "the upsampled half leaves zero"
    assert not torch.equal(new_level["downs.1.1.0.weight"], bottleneck), "the new bottleneck trains"


def test_making_shallower_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot make a U-Net of depth 3 shallower"):
        deepen(UNet(in_channels=1, width=4, depth=3).state_dict(), 2)
