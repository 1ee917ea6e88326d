"""An ensemble's members' probabilities combined on the input grid, by the card's rule (``postprocessing.fusion``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from atriumseg.models.card import LOGIT_CLIP


def fuse(maps: Iterable[torch.Tensor], rule: str) -> torch.Tensor:
    """The members' probability maps (on one grid, in [0, 1]) combined by ``rule``, a card's validated
    ``postprocessing.fusion``: their mean ("mean") or the sigmoid of their mean logit ("logit_mean", each
    probability clipped to ``[LOGIT_CLIP, 1 - LOGIT_CLIP]`` first), in float32.

    ``maps`` is consumed one map at a time into one running sum (a generator computing each member's map keeps
    memory flat however many members); no map is changed, and a single member's comes back as it is.
    """
    members = iter(maps)
    first = next(members, None)
    if first is None:
        raise ValueError("no member's probabilities to fuse")
    second = next(members, None)
    if second is None:
        return first
    logit = rule == "logit_mean"

    def term(prob: torch.Tensor) -> torch.Tensor:
        return torch.logit(prob.float(), eps=LOGIT_CLIP) if logit else prob.float()

    total, count = term(first) + term(second), 2  # a new tensor: the maps are left as they are
    for prob in members:
        total += term(prob)
        count += 1
    total /= count
    return total.sigmoid_() if logit else total
