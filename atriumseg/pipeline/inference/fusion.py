"""An ensemble's members' probabilities combined on the input grid, by the card's rule (``postprocessing.fusion``)."""

from __future__ import annotations

import torch

from atriumseg.models.card import FUSIONS, LOGIT_CLIP


class Fusion:
    """Members' probability maps, added one at a time into one running sum (memory does not grow with the
    members), combined by ``rule``: their mean ("mean") or the sigmoid of their mean logit ("logit_mean", each
    probability clipped to ``[LOGIT_CLIP, 1 - LOGIT_CLIP]`` first). The maps added are taken over (changed in
    place); a single member's map comes back unchanged whatever the rule."""

    def __init__(self, rule: str) -> None:
        if rule not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {rule!r}")
        self.rule = rule
        self._total: torch.Tensor | None = None
        self._count = 0

    def _term(self, prob: torch.Tensor) -> torch.Tensor:
        return torch.logit(prob, eps=LOGIT_CLIP) if self.rule == "logit_mean" else prob

    def add(self, prob: torch.Tensor) -> None:
        """Add one member's probabilities (float32 in [0, 1], every member's on the same grid)."""
        if self._total is None:
            self._total = prob
        else:
            if self._count == 1:
                self._total = self._term(self._total)
            self._total += self._term(prob)
        self._count += 1

    def result(self) -> torch.Tensor:
        """The combined probabilities, in [0, 1]."""
        if self._total is None:
            raise ValueError("no member's probabilities were added")
        if self._count == 1:
            return self._total
        mean = self._total.div_(self._count)
        return mean.sigmoid_() if self.rule == "logit_mean" else mean
