"""An ensemble's members' probabilities combined on the input grid, by the card's rule (``postprocessing.fusion``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from atriumseg.models.card import LOGIT_CLIP


def check_weights(weights: Sequence[float]) -> None:
    """Refuse (:class:`ValueError`) fusion weights that are negative or all 0: they make no weighted mean."""
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"fusion weights must not be negative nor all 0, got {list(weights)}")


def _check_count(weights: Sequence[float] | None, count: int) -> None:
    """Refuse weights that are not one per map (None, equal shares, fits any count)."""
    if weights is not None and len(weights) != count:
        raise ValueError(f"{len(weights)} fusion weights for {count} members' maps")


def fuse(maps: Iterable[torch.Tensor], rule: str, weights: Sequence[float] | None = None) -> torch.Tensor:
    """The members' probability maps (on one grid, in [0, 1]) combined by ``rule``, a card's validated
    ``postprocessing.fusion``: their mean ("mean") or the sigmoid of their mean logit ("logit_mean", each
    probability clipped to ``[LOGIT_CLIP, 1 - LOGIT_CLIP]`` first), in float32. ``weights``, one per map (not
    negative, not all 0), make it a weighted mean, to study members' shares; None weighs them equally.

    ``maps`` is consumed one map at a time into one running sum (a generator computing each member's map keeps
    memory flat however many members); no map is changed, and a single member's comes back as it is.
    """
    if weights is not None:
        check_weights(weights)
    members = iter(maps)
    first = next(members, None)
    if first is None:
        raise ValueError("no member's probabilities to fuse")
    second = next(members, None)
    if second is None:
        _check_count(weights, 1)
        return first
    logit = rule == "logit_mean"

    def term(prob: torch.Tensor, index: int) -> torch.Tensor:
        value = torch.logit(prob.float(), eps=LOGIT_CLIP) if logit else prob.float()
        if weights is None:
            return value
        if index >= len(weights):
            raise ValueError(f"{len(weights)} fusion weights for more members' maps")
        return value * weights[index]

    total, count = term(first, 0) + term(second, 1), 2  # a new tensor: the maps are left as they are
    for prob in members:
        total += term(prob, count)
        count += 1
    _check_count(weights, count)
    total /= count if weights is None else sum(weights)
    return total.sigmoid_() if logit else total
