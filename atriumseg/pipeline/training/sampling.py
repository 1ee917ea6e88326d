"""Drawing training volumes from several datasets in fixed proportions per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def batch_quota(weights: Sequence[float], batch_size: int, generator: torch.Generator) -> list[int]:
    """How many of ``batch_size`` slots each dataset fills: the whole part of its share, remainders by lot.

    With weights 1:1 and a batch of 4 that is always 2 and 2; with 1:2 and 4 it is 1 or 2 and 2 or 3,
    4/3 and 8/3 on average.
    """
    total = float(sum(weights))
    share = [w / total * batch_size for w in weights]
    counts = [int(s) for s in share]
    left = batch_size - sum(counts)
    if left:
        fractions = torch.tensor([s - c for s, c in zip(share, counts)], dtype=torch.float64)
        for i in torch.multinomial(fractions, left, replacement=False, generator=generator).tolist():
            counts[i] += 1
    return counts


class BalancedSampler(Sampler[int]):
    """Indices into the concatenation of datasets of ``sizes``, each batch split between them by ``weights``.

    Within a dataset, volumes are drawn uniformly with replacement, so 15 volumes of one protocol are
    seen as often, as a group, as 80 of another when their weights are equal. A ``DataLoader`` with
    ``batch_size`` and this sampler gets exactly ``batch_size`` consecutive indices per batch.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], batch_size: int, batches: int,
                 seed: int) -> None:
        if len(sizes) != len(weights):
            raise ValueError(f"{len(sizes)} datasets but {len(weights)} weights")
        if any(n < 1 for n in sizes):
            raise ValueError(f"every dataset needs at least one training volume, got sizes {list(sizes)}")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
        self.sizes, self.weights = list(sizes), [float(w) for w in weights]
        self.batch_size, self.batches = batch_size, batches
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.batch_size * self.batches

    def __iter__(self) -> Iterator[int]:
        g = self._generator
        for _ in range(self.batches):
            batch: list[int] = []
            for size, offset, count in zip(self.sizes, self.offsets, batch_quota(self.weights, self.batch_size, g)):
                batch += (torch.randint(size, (count,), generator=g) + offset).tolist()
            yield from (batch[i] for i in torch.randperm(len(batch), generator=g).tolist())
