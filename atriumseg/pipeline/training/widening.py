"""Growing a trained U-Net's weights so a larger network starts from what it computes (``--init``).

Three ways a run may be larger than the model it starts from: more neighbour slices in (``--context``: the first
layer gains zero weights for the outer slices), more channels per level (``--width``: each level's channels
are the model's, then copies of randomly drawn ones, whose outgoing weights are shared among the copies, as in
Net2WiderNet, Chen et al., ICLR 2016) and more levels (``--depth``: a new bottleneck below the old one, whose
decoder level starts as the identity on the old bottleneck's features, as in Net2DeeperNet). Either way the grown
network computes what the model did, so training adds to it instead of starting over.
"""

from __future__ import annotations

import torch

from atriumseg.models.unet import Down, Up

FIRST_CONV = "inc.0.weight"  # the U-Net's first convolution, the one layer that sees the input channels


def widen_context(state: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """A U-Net's ``state`` taking ``channels`` neighbour-slice channels instead of its own fewer ones.

    The first convolution gains zero weights for the added outer slices (channel ``k`` is the slice at offset
    ``k - context``, so the old channels stay in the middle): the widened network computes exactly what the
    model did, and training then learns what the further slices add (``--init`` with a larger ``--context``).
    """
    weight = state[FIRST_CONV]  # (width, 2 * context + 1, 3, 3)
    extra = (channels - weight.shape[1]) // 2
    return {**state, FIRST_CONV: torch.nn.functional.pad(weight, (0, 0, 0, 0, extra, extra))}


def widen_width(state: dict[str, torch.Tensor], width: int, noise: float = 0.01,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A U-Net's ``state`` (:class:`~atriumseg.models.unet.UNet`) for ``width`` channels at the first level
    instead of its own fewer ones, the same depth.

    Every level keeps its channels and adds copies of channels drawn at random (each at most once while it can),
    and each layer reading a copied channel divides its weights for it by the number of copies, so the sum it
    computes is unchanged. Identical copies would receive identical updates for ever, so the copies' incoming
    weights get Gaussian noise of ``noise`` times their layer's weight spread: the widened network computes what
    the model did up to that noise (exactly with ``noise=0``).
    """
    old = state[FIRST_CONV].shape[0]
    if width < old:
        raise ValueError(f"cannot narrow a U-Net of width {old} to {width}")
    depth = _depth(state)
    levels = [_copies(old * 2**level, width * 2**level, generator) for level in range(depth)]
    widened = dict(state)

    def conv(prefix: str, reads: torch.Tensor | None, writes: torch.Tensor | None, transposed: bool = False) -> None:
        weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        weight = weight.transpose(0, 1) if transposed else weight  # as (out, in, kh, kw)
        if reads is not None:
            weight = weight[:, reads] / torch.bincount(reads)[reads].view(1, -1, 1, 1).to(weight.dtype)
        if writes is not None:
            copies, spread = slice(weight.shape[0], None), weight.std()
            weight, bias = weight[writes], bias[writes]
            weight[copies] += noise * spread * torch.randn(weight[copies].shape, generator=generator)
        widened[f"{prefix}.weight"] = weight.transpose(0, 1) if transposed else weight
        widened[f"{prefix}.bias"] = bias

    conv("inc.0", None, levels[0])
    conv("inc.2", levels[0], levels[0])
    for level in range(1, depth):
        conv(f"downs.{level - 1}.1.0", levels[level - 1], levels[level])
        conv(f"downs.{level - 1}.1.2", levels[level], levels[level])
    for index, level in enumerate(range(depth - 2, -1, -1)):
        conv(f"ups.{index}.up", levels[level + 1], levels[level], transposed=True)
        skip_and_up = torch.cat([levels[level], levels[level] + old * 2**level])
        conv(f"ups.{index}.conv.0", skip_and_up, levels[level])
        conv(f"ups.{index}.conv.2", levels[level], levels[level])
    conv("outc", levels[0], None)
    return widened


def deepen(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """A U-Net's ``state`` (:class:`~atriumseg.models.unet.UNet`) for ``depth`` levels instead of its own fewer
    ones, the same width.

    Each added level puts a new bottleneck (PyTorch's default initialisation) below the old one, which becomes the
    deepest encoder level; the new decoder level's convolutions start as the identity on the skip from the old
    bottleneck (whose features are non-negative, after a ReLU) and zero on the upsampled new bottleneck. So the
    deepened network computes exactly what the model did, and training learns what the coarser level adds; the zero
    weights get gradients from the first step, and the new bottleneck from the second.
    """
    old = _depth(state)
    if depth < old:
        raise ValueError(f"cannot make a U-Net of depth {old} shallower ({depth})")
    deepened = dict(state)
    for level in range(old, depth):  # the new bottleneck's level; the old one's is level - 1
        channels = state[FIRST_CONV].shape[0] * 2 ** (level - 1)
        bottleneck, decoder = Down(channels, 2 * channels).state_dict(), Up(2 * channels, channels).state_dict()
        identity = torch.zeros(channels, channels, 3, 3)
        identity[range(channels), range(channels), 1, 1] = 1.0
        decoder["conv.0.weight"] = torch.cat([identity, torch.zeros_like(identity)], dim=1)  # reads [skip, up]
        decoder["conv.2.weight"] = identity.clone()
        decoder["conv.0.bias"], decoder["conv.2.bias"] = torch.zeros(channels), torch.zeros(channels)
        ups = {key: value for key, value in deepened.items() if key.startswith("ups.")}
        deepened = {key: value for key, value in deepened.items() if key not in ups}
        for key, value in ups.items():  # the new decoder level is the first the bottleneck's output meets
            index, rest = key.removeprefix("ups.").split(".", 1)
            deepened[f"ups.{int(index) + 1}.{rest}"] = value
        deepened.update({f"downs.{level - 1}.{key}": value for key, value in bottleneck.items()})
        deepened.update({f"ups.0.{key}": value for key, value in decoder.items()})
    return deepened


def _depth(state: dict[str, torch.Tensor]) -> int:
    """The number of levels of a U-Net's ``state``, the bottleneck included."""
    return 1 + sum(1 for key in state if key.startswith("downs.") and key.endswith(".1.0.weight"))


def _copies(old: int, new: int, generator: torch.Generator | None) -> torch.Tensor:
    """For each of ``new`` channels the old channel it copies: the ``old`` ones in order, then random draws, each
    old channel drawn once before any is drawn again."""
    rounds = -(-(new - old) // old)
    return torch.cat([torch.arange(old), *(torch.randperm(old, generator=generator) for _ in range(rounds))])[:new]
