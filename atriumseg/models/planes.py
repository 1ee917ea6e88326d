"""Several 2.5D networks over one volume, each slicing it in its own plane, their probabilities averaged.

The whole-volume network of an exported ensemble (the MONAI bundle's ``scripts/planes.py``): it takes a
preprocessed volume and returns the logits of its members' mean probability on the same grid, so MONAI's
``SimpleInferer`` and post-processing (sigmoid, ``Invertd``, threshold) treat it as one network. It needs
torch alone (the bundle runs without this package) and is TorchScript-compatible (``models/model.ts``).
"""

from __future__ import annotations

import torch
from torch import nn

LOGIT_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before the logit, so it stays finite


class PlaneEnsemble(nn.Module):
    """``networks[i]`` sees every slice along spatial axis ``slice_dims[i]`` with ``contexts[i]`` neighbours on each
    side as channels (edge slices repeat, as ``StackNeighbours`` does), ``batch_size`` slices per forward pass."""

    def __init__(
        self, networks: list[nn.Module], slice_dims: list[int], contexts: list[int], batch_size: int = 16
    ) -> None:
        super().__init__()
        if not networks or not len(networks) == len(slice_dims) == len(contexts):
            raise ValueError(
                f"one slice axis and one context per network: {len(networks)} networks, "
                f"{len(slice_dims)} slice axes, {len(contexts)} contexts"
            )
        if any(dim not in (0, 1, 2) for dim in slice_dims) or any(context < 0 for context in contexts):
            raise ValueError(f"slice axes must be 0, 1 or 2 and contexts >= 0, got {slice_dims} and {contexts}")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.networks = nn.ModuleList(networks)
        self.slice_dims = [int(dim) for dim in slice_dims]
        self.contexts = [int(context) for context in contexts]
        self.batch_size = int(batch_size)
        self.logit_eps = LOGIT_EPS

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, X, Y, Z)`` of the members' mean left-atrium probability for volumes ``(B, 1, X, Y, Z)``."""
        total = torch.zeros_like(volume)
        for index, network in enumerate(self.networks):  # a module is no argument in TorchScript: the loop is here
            dim, context = self.slice_dims[index], self.contexts[index]
            for item in range(volume.shape[0]):
                slices = volume[item, 0].movedim(dim, 0)  # (N, H, W): the member's slices first
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
                total[item, 0] += prob.movedim(0, dim)
        return torch.logit(total / len(self.networks), eps=self.logit_eps)
