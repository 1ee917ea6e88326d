"""Stacking neighbouring slices as channels, so a 2D network sees a thin slab (2.5D)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform, Transform


class StackNeighbours(Transform):
    """Turn a one-channel volume ``(1, X, Y, Z)`` into ``(2 * context + 1, X, Y, Z)``.

    Channel ``k`` holds the slice at offset ``k - context`` along ``slice_dim`` (a spatial
    axis index); slices beyond the edge repeat the edge slice. Metadata is kept.
    """

    def __init__(self, slice_dim: int, context: int) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.slice_dim, self.context = slice_dim, context

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.context == 0:
            return img
        if img.shape[0] != 1:
            raise ValueError(f"StackNeighbours expects one channel, got {img.shape[0]}")
        dim = self.slice_dim + 1
        n = img.shape[dim]
        base = torch.arange(n, device=img.device)
        shifted = [
            img.index_select(dim, (base + offset).clamp(0, n - 1)) for offset in range(-self.context, self.context + 1)
        ]
        return torch.cat(shifted, dim=0)


class StackNeighboursd(MapTransform):
    """Dictionary wrapper of :class:`StackNeighbours`."""

    def __init__(self, keys: Sequence[Hashable], slice_dim: int, context: int) -> None:
        super().__init__(keys)
        self.transform = StackNeighbours(slice_dim, context)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
