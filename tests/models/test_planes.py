"""PlaneEnsemble: each member padded, stacked and sliced in its own plane as atriumseg does it, probabilities averaged,
and TorchScript alike."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from atriumseg.models.card import Architecture, ModelCard, Preprocessing
from atriumseg.models.planes import PlaneEnsemble
from atriumseg.models.unet import UNet
from atriumseg.pipeline.export.bundle_configs import plane_ensemble_arguments
from atriumseg.transforms.context import StackNeighbours
from atriumseg.transforms.preprocessing import IMAGE, padding_transforms

# (plane, context, depth, min_slice_size): three planes, three divisors (2, 4, 8), padding needed or not; an odd
# minimum size, so padding to it and then to the divisor splits differently from padding once
DESIGNS = [("axial", 1, 2, 25), ("coronal", 2, 3, 0), ("sagittal", 0, 4, 20)]


def card(plane: str, context: int, depth: int, min_size: int) -> ModelCard:
    return ModelCard(architecture=Architecture(in_channels=2 * context + 1, width=4, depth=depth),
                     preprocessing=Preprocessing(plane=plane, context=context, min_slice_size=min_size))


def slice_wise(network: UNet, member: ModelCard, volume: torch.Tensor) -> torch.Tensor:
    """One member's probabilities ``(1, X, Y, Z)`` as atriumseg computes them: its own padding transforms, neighbours
    stacked, one slice at a time, cropped back to the volume."""
    framed = MetaTensor(volume, affine=torch.eye(4, dtype=torch.float64))
    padded = Compose(padding_transforms(member))({IMAGE: framed})[IMAGE]
    before = [round(-float(v)) for v in padded.affine[:3, 3]]  # where the volume's first voxel went
    dim = member.preprocessing.slice_dim
    slices = StackNeighbours(dim, member.preprocessing.context)(padded.as_tensor()).movedim(dim + 1, 0)
    with torch.no_grad():
        prob = torch.cat([torch.sigmoid(network(s[None])) for s in slices])[:, 0].movedim(0, dim)
    return prob[tuple(slice(b, b + n) for b, n in zip(before, volume.shape[1:], strict=True))][None]


@pytest.fixture
def members() -> list[tuple[UNet, ModelCard]]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cards = [card(*design) for design in DESIGNS]
        return [(UNet(c.architecture.in_channels, 4, c.architecture.depth).eval(), c) for c in cards]


def ensemble(members: list[tuple[UNet, ModelCard]], batch_size: int = 16) -> PlaneEnsemble:
    return PlaneEnsemble([net for net, _ in members], **plane_ensemble_arguments([c for _, c in members]),
                         batch_size=batch_size)


def test_each_member_sees_its_plane_as_atriumseg_pads_and_slices_it_and_the_probabilities_are_averaged(
    members,
) -> None:
    volume = torch.rand(2, 1, 16, 13, 11, generator=torch.Generator().manual_seed(1))  # padded in two odd steps
    with torch.no_grad():
        logits = ensemble(members, batch_size=5)(volume)
    assert logits.shape == volume.shape
    for item in range(2):
        each = [slice_wise(net, member, volume[item]) for net, member in members]
        expected = sum(each) / len(each)
        torch.testing.assert_close(torch.sigmoid(logits[item]), expected, atol=1e-5, rtol=0)
        assert min(float((one - expected).abs().max()) for one in each) > 0.01  # the average is none of them
    with torch.no_grad():
        alone = torch.sigmoid(ensemble(members[1:2])(volume[:1]))[0]
    torch.testing.assert_close(alone, slice_wise(*members[1], volume[0]), atol=1e-5, rtol=0)


def test_torchscript_gives_the_same_logits(members) -> None:
    model = ensemble(members, batch_size=3)
    volume = torch.rand(1, 1, 9, 8, 15, generator=torch.Generator().manual_seed(2))
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(volume), model(volume), atol=1e-6, rtol=0)
    with pytest.raises(Exception, match="one-channel volumes"):
        scripted(volume.expand(1, 2, 9, 8, 15))


@pytest.mark.parametrize(
    ("dims", "contexts", "sizes", "divisors", "batch", "message"),
    [
        ([2], [1, 1], [0, 0], [8, 8], 4, "one slice axis, context, minimum size and divisor per network"),
        ([3, 1], [1, 1], [0, 0], [8, 8], 4, "slice axes must be"),
        ([2, 1], [1, -1], [0, 0], [8, 8], 4, "contexts >= 0"),
        ([2, 1], [1, 1], [0, -1], [8, 8], 4, "minimum sizes must be >= 0"),
        ([2, 1], [1, 1], [0, 0], [8, 0], 4, "divisors"),
        ([2, 1], [1, 1], [0, 0], [8, 8], 0, "batch size"),
    ],
)
def test_a_malformed_ensemble_is_refused(members, dims, contexts, sizes, divisors, batch, message) -> None:
    with pytest.raises(ValueError, match=message):
        PlaneEnsemble([members[0][0], members[0][0]], dims, contexts, sizes, divisors, batch)
