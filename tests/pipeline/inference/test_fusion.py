"""fuse: an ensemble's members' probabilities combined by the card's rule, one map at a time."""

from __future__ import annotations

import pytest
import torch

from atriumseg.models.card import LOGIT_CLIP
from atriumseg.pipeline.inference.fusion import fuse


def _fused(rule: str, *maps: list[float]) -> torch.Tensor:
    return fuse((torch.tensor(values, dtype=torch.float32) for values in maps), rule)


def test_the_mean_rule_averages_the_probabilities() -> None:
    torch.testing.assert_close(_fused("mean", [0.99, 0.6, 0.0], [0.2, 0.001, 0.0]), torch.tensor([0.595, 0.3005, 0.0]))


def test_the_logit_rule_is_the_sigmoid_of_the_mean_clipped_logit() -> None:
    """A sure member outweighs a hesitant one (0.99 and 0.2 pass 0.5 by more); a member's 0 away from the atrium
    counts as the clip, not as minus infinity."""
    fused = _fused("logit_mean", [0.99, 0.6, 0.0, 0.3], [0.2, 0.0, 0.0, 0.7], [0.9, 0.001, 0.0, 0.5])
    clipped = torch.tensor([[0.99, 0.6, LOGIT_CLIP, 0.3], [0.2, LOGIT_CLIP, LOGIT_CLIP, 0.7],
                            [0.9, LOGIT_CLIP, LOGIT_CLIP, 0.5]])
    expected = torch.sigmoid(torch.log(clipped / (1 - clipped)).mean(0))
    torch.testing.assert_close(fused, expected)
    assert fused[0] > 0.8 > _fused("mean", [0.99], [0.2], [0.9])[0], "the logit mean trusts the sure members more"
    assert fused[2] == pytest.approx(LOGIT_CLIP) and fused[3] == pytest.approx(0.5), "symmetric doubt cancels out"


@pytest.mark.parametrize("rule", ["mean", "logit_mean"])
def test_the_members_maps_are_left_as_they_were(rule: str) -> None:
    maps = [torch.tensor([0.9, 0.2]), torch.tensor([0.4, 0.0], dtype=torch.float16)]
    kept = [m.clone() for m in maps]
    fused = fuse(iter(maps), rule)
    assert all(torch.equal(m, k) for m, k in zip(maps, kept, strict=True)) and fused.dtype == torch.float32
    alone = torch.tensor([0.0, 0.001, 0.4, 1.0])
    assert fuse([alone], rule) is alone, "one member's map comes back as it is, whatever the rule"


@pytest.mark.parametrize("rule", ["mean", "logit_mean"])
def test_weights_give_each_member_its_share(rule: str) -> None:
    """Weights make a weighted mean (of probabilities, or of logits): a member weighed 0 drops out, equal weights are
    the plain rule, and only their ratios count."""
    maps = [torch.tensor([0.9, 0.2, 0.6]), torch.tensor([0.3, 0.8, 0.6]), torch.tensor([0.5, 0.5, 0.1])]
    torch.testing.assert_close(fuse(maps, rule, [1, 1, 0]), fuse(maps[:2], rule))
    torch.testing.assert_close(fuse(maps, rule, [2, 2, 2]), fuse(maps, rule))
    term = (lambda p: torch.logit(p, eps=LOGIT_CLIP)) if rule == "logit_mean" else (lambda p: p)
    weighted = (0.5 * term(maps[0]) + 0.3 * term(maps[1]) + 0.2 * term(maps[2]))
    expected = weighted.sigmoid() if rule == "logit_mean" else weighted
    torch.testing.assert_close(fuse(iter(maps), rule, [5, 3, 2]), expected)


@pytest.mark.parametrize(("weights", "reason"), [
    ([1, -1, 1], "must not be negative nor all 0"), ([0, 0, 0], "must not be negative nor all 0"),
    ([1, 1], "2 fusion weights for more members' maps"), ([1, 1, 1, 1], "4 fusion weights for 3 members' maps"),
])
def test_weights_that_do_not_fit_the_members_are_refused(weights: list[float], reason: str) -> None:
    maps = [torch.tensor([0.9]), torch.tensor([0.3]), torch.tensor([0.5])]
    with pytest.raises(ValueError, match=reason):
        fuse(maps, "mean", weights)


def test_weights_for_more_members_than_one_map_are_refused() -> None:
    """A single map comes back as it is, but not past weights meant for several members."""
    alone = torch.tensor([0.4])
    assert fuse([alone], "mean", [3]) is alone
    with pytest.raises(ValueError, match="2 fusion weights for 1 members' maps"):
        fuse([alone], "mean", [1, 1])


def test_no_member_is_refused() -> None:
    with pytest.raises(ValueError, match="no member's probabilities"):
        fuse([], "mean")
