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

    def __call__(self, img: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Stack every slice, or only the slices at ``indices`` (each with its neighbours, read from ``img``)."""
        if img.shape[0] != 1:
            raise ValueError(f"StackNeighbours expects one channel, got {img.shape[0]}")
        dim = self.slice_dim + 1
        n = img.shape[dim]
        if indices is None:
            if self.context == 0:
                return img
            indices = torch.arange(n, device=img.device)
        offsets = torch.arange(-self.context, self.context + 1, device=img.device)
        table = (indices[None, :] + offsets[:, None]).clamp(0, n - 1)  # (channel, slice) -> source slice
        where: list[slice | torch.Tensor] = [slice(None)] * img.ndim
        where[dim] = table
        return img[tuple(where)].movedim(dim, 0)[:, 0]  # one gather, much faster than index_select on a view


class NeighbourView(Transform):
    """Turn a one-channel volume padded with ``context`` edge slices each side along ``slice_dim`` into the
    ``(2 * context + 1, X, Y, Z)`` stack that :class:`StackNeighbours` makes of the unpadded volume, as a view.

    Training caches the padded volume (one channel) and draws its slices from this view, so the cache holds a
    volume once instead of ``2 * context + 1`` times; cutting a slice copies only that slice's channels.
    """

    def __init__(self, slice_dim: int, context: int) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.slice_dim, self.context = slice_dim, context

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Channel ``k`` at slice ``i`` is the padded volume's slice ``i + k`` (no copy)."""
        if img.shape[0] != 1:
            raise ValueError(f"NeighbourView expects one channel, got {img.shape[0]}")
        return img.unfold(self.slice_dim + 1, 2 * self.context + 1, 1).movedim(-1, 0)[:, 0]


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
