"""Balanced sampling: every batch takes each dataset's share."""

from __future__ import annotations

import numpy as np
import pytest

from atriumseg.pipeline.training.sampling import BalancedSampler


@pytest.mark.parametrize(("weights", "expected"), [((1.0, 1.0), (2, 2)), ((1.0, 3.0), (1, 3)), ((0.0, 1.0), (0, 4))])
def test_every_batch_draws_from_each_dataset_in_proportion(weights, expected) -> None:
    sampler = BalancedSampler(sizes=[3, 12], weights=weights, batch_size=4, batches=50, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 200
    for start in range(0, 200, 4):
        batch = indices[start:start + 4]
        assert (sum(i < 3 for i in batch), sum(i >= 3 for i in batch)) == expected, batch
    assert set(indices) <= set(range(15))


def test_fractional_shares_hold_on_average() -> None:
    counts = [sum(i < 3 for i in BalancedSampler([3, 12], [1.0, 2.0], 4, 1, seed=s)) for s in range(300)]
    assert abs(np.mean(counts) - 4 / 3) < 0.1, np.mean(counts)
    assert set(counts) == {1, 2}
