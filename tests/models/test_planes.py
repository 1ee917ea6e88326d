"""PlaneEnsemble: members slicing one volume in their own planes, probabilities averaged, TorchScript alike."""

from __future__ import annotations

import pytest
import torch

from atriumseg.models.planes import PlaneEnsemble
from atriumseg.models.unet import UNet
from atriumseg.transforms.context import StackNeighbours


def slice_wise(network: UNet, volume: torch.Tensor, slice_dim: int, context: int) -> torch.Tensor:
    """One member's probabilities ``(1, X, Y, Z)``, computed as atriumseg's slice inference does: stack, then one
    slice at a time."""
    stacked = StackNeighbours(slice_dim, context)(volume)  # (C, X, Y, Z)
    slices = stacked.movedim(slice_dim + 1, 0)  # (N, C, H, W)
    with torch.no_grad():
        prob = torch.cat([torch.sigmoid(network(s[None])) for s in slices])  # (N, 1, H, W)
    return prob[:, 0].movedim(0, slice_dim)[None]


@pytest.fixture
def members() -> list[tuple[UNet, int, int]]:
    torch.manual_seed(0)
    return [(UNet(3, 4, 2).eval(), 2, 1), (UNet(5, 4, 3).eval(), 1, 2), (UNet(1, 4, 2).eval(), 0, 0)]


def test_each_member_slices_its_own_axis_and_the_probabilities_are_averaged(members) -> None:
    volume = torch.rand(2, 1, 8, 16, 12, generator=torch.Generator().manual_seed(1))
    ensemble = PlaneEnsemble([m[0] for m in members], [m[1] for m in members], [m[2] for m in members], batch_size=5)
    with torch.no_grad():
        logits = ensemble(volume)
    assert logits.shape == volume.shape
    for item in range(2):
        expected = sum(slice_wise(net, volume[item], dim, context) for net, dim, context in members) / 3
        torch.testing.assert_close(torch.sigmoid(logits[item]), expected, atol=1e-5, rtol=0)
    one = PlaneEnsemble([members[1][0]], [1], [2])
    with torch.no_grad():
        alone = torch.sigmoid(one(volume[:1]))[0]
    torch.testing.assert_close(alone, slice_wise(members[1][0], volume[0], 1, 2), atol=1e-5, rtol=0)
    assert float((alone - expected).abs().max()) > 0.01  # the members differ: the average is not one of them


def test_torchscript_gives_the_same_logits(members) -> None:
    ensemble = PlaneEnsemble([m[0] for m in members], [m[1] for m in members], [m[2] for m in members], batch_size=3)
    volume = torch.rand(1, 1, 8, 8, 16, generator=torch.Generator().manual_seed(2))
    scripted = torch.jit.script(ensemble)
    with torch.no_grad():
        torch.testing.assert_close(scripted(volume), ensemble(volume), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("dims", "contexts", "batch", "message"),
    [([2], [1, 1], 4, "one slice axis and one context per network"), ([3, 1], [1, 1], 4, "slice axes must be"),
     ([2, 1], [1, -1], 4, "contexts >= 0"), ([2, 1], [1, 1], 0, "batch size")],
)
def test_a_malformed_ensemble_is_refused(members, dims, contexts, batch, message) -> None:
    with pytest.raises(ValueError, match=message):
        PlaneEnsemble([members[0][0], members[0][0]], dims, contexts, batch)
