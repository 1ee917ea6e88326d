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
        fractions = torch.tensor([s - c for s, c in zip(share, counts, strict=True)], dtype=torch.float64)
        for i in torch.multinomial(fractions, left, replacement=False, generator=generator).tolist():
            counts[i] += 1
    return counts


class BalancedSampler(Sampler[int]):
    """Indices into the concatenation of datasets of ``sizes``, each batch split between them by ``weights``.

    Within a dataset, volumes are drawn uniformly with replacement, so 15 volumes of one protocol are
    seen as often, as a group, as 80 of another when their weights are equal. A ``DataLoader`` with
    ``batch_size`` and this sampler gets exactly ``batch_size`` consecutive indices per batch.

    In distributed training every rank has a sampler of its own, seeded by its rank
    (:func:`~atriumseg.pipeline.training.distributed.rank_seed`), and augments from a rank-seeded random
    state: together the ranks draw what one process with a ``world_size`` times larger batch would draw
    (in distribution). A ``DistributedSampler`` would instead split the volumes into one shard per rank,
    padding with repeats when they do not divide evenly, which over-weights the repeated volumes and
    confines each rank to its shard; it suits epochs that visit each item once, which these do not.
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
            quota = batch_quota(self.weights, self.batch_size, g)
            for size, offset, count in zip(self.sizes, self.offsets, quota, strict=True):
                batch += (torch.randint(size, (count,), generator=g) + offset).tolist()
            yield from (batch[i] for i in torch.randperm(len(batch), generator=g).tolist())
