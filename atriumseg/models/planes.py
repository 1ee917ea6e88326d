"""Several 2.5D networks over one volume, each slicing it in its own plane, their probabilities averaged.

The whole-volume network of an exported ensemble (the MONAI bundle's ``scripts/planes.py``): it takes a
volume in the members' shared frame (oriented, resampled, scaled, not padded) and returns the logits of
its members' mean probability on the same grid, so MONAI's ``SimpleInferer`` and post-processing
(sigmoid, ``Invertd``, threshold) treat it as one network. Each member pads its own in-plane axes as
atriumseg pads them for it (symmetric zero padding to ``min_size``, then to a multiple of ``divisor``),
stacks neighbours as ``StackNeighbours`` does (edge slices repeat), and is cropped back before the
average. It needs torch alone (the bundle runs without this package) and is TorchScript-compatible
(``models/model.ts``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

LOGIT_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before the logit, so it stays finite


class PlaneEnsemble(nn.Module):
    """``networks[i]`` sees every slice along spatial axis ``slice_dims[i]`` with ``contexts[i]`` neighbours on each
    side as channels, its in-plane axes zero-padded to at least ``min_sizes[i]`` (0: none) and then to a multiple
    of ``divisors[i]``; ``batch_size`` slices per forward pass."""

    def __init__(
        self, networks: list[nn.Module], slice_dims: list[int], contexts: list[int], min_sizes: list[int],
        divisors: list[int], batch_size: int = 16,
    ) -> None:
        super().__init__()
        if not networks or len({len(networks), len(slice_dims), len(contexts), len(min_sizes), len(divisors)}) != 1:
            raise ValueError(
                f"one slice axis, context, minimum size and divisor per network: {len(networks)} networks, "
                f"{len(slice_dims)} slice axes, {len(contexts)} contexts, {len(min_sizes)} sizes, "
                f"{len(divisors)} divisors"
            )
        if any(dim not in (0, 1, 2) for dim in slice_dims) or any(context < 0 for context in contexts):
            raise ValueError(f"slice axes must be 0, 1 or 2 and contexts >= 0, got {slice_dims} and {contexts}")
        if any(size < 0 for size in min_sizes) or any(divisor < 1 for divisor in divisors) or batch_size < 1:
            raise ValueError(
                f"minimum sizes must be >= 0, divisors and the batch size >= 1, got {min_sizes}, {divisors} and "
                f"{batch_size}"
            )
        self.networks = nn.ModuleList(networks)
        self.slice_dims = [int(dim) for dim in slice_dims]
        self.contexts = [int(context) for context in contexts]
        self.min_sizes = [int(size) for size in min_sizes]
        self.divisors = [int(divisor) for divisor in divisors]
        self.batch_size = int(batch_size)
        self.logit_eps = LOGIT_EPS

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, X, Y, Z)`` of the members' mean left-atrium probability for volumes ``(B, 1, X, Y, Z)``."""
        if volume.dim() != 5 or volume.shape[1] != 1:
            raise ValueError("PlaneEnsemble expects one-channel volumes (B, 1, X, Y, Z)")
        total = torch.zeros_like(volume)
        for index, network in enumerate(self.networks):  # a module is no argument in TorchScript: the loop is here
            dim, context = self.slice_dims[index], self.contexts[index]
            shape = volume.shape[2:]
            starts = [0, 0, 0]
            pad: list[int] = []  # the same for every volume of the batch
            for axis in (2, 1, 0):  # functional.pad takes the last axis first
                before, after = 0, 0
                if axis != dim:
                    size = shape[axis]
                    at_least = max(size, self.min_sizes[index])
                    multiple = (at_least + self.divisors[index] - 1) // self.divisors[index] * self.divisors[index]
                    before = (at_least - size) // 2 + (multiple - at_least) // 2  # SpatialPad, then DivisiblePad
                    after = multiple - size - before
                starts[axis] = before
                pad += [before, after]
            for item in range(volume.shape[0]):
                slices = functional.pad(volume[item, 0], pad).movedim(dim, 0)  # (N, H, W): the member's slices first
                count = slices.shape[0]
                prob = torch.empty_like(slices)
                for start in range(0, count, self.batch_size):
                    stop = min(start + self.batch_size, count)
                    wanted = torch.arange(start, stop, device=volume.device)
                    channels = [
                        slices.index_select(0, (wanted + offset).clamp(0, count - 1))
                        for offset in range(-context, context + 1)
                    ]
                    prob[start:stop] = torch.sigmoid(network(torch.stack(channels, 1)))[:, 0]
                prob = prob.movedim(0, dim)
                for axis in range(3):
                    prob = prob.narrow(axis, starts[axis], shape[axis])
                total[item, 0] += prob
        return torch.logit(total / len(self.networks), eps=self.logit_eps)
