"""Test-time augmentation as a wrapper of the network call, the way nnU-Net mirrors its inputs.

Each batch of slices goes through the network as it is and under intensity gammas and in-plane
shifts (never flips: the atrium has a side); the probabilities, shifted back, are averaged. The
wrapper knows nothing of focusing or volumes, so any inferer can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

TTA_GAMMAS = (0.8, 1.25)  # intensity gamma on the [0, 1]-scaled slices
TTA_SHIFTS = ((4, 4), (-4, -4))  # in-plane voxel shifts


class TestTimeAugmentation(nn.Module):
    """Mean probability of ``predict`` over the identity, ``gammas`` and in-plane ``shifts`` of its input."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        gammas: Sequence[float] = TTA_GAMMAS,
        shifts: Sequence[tuple[int, int]] = TTA_SHIFTS,
    ) -> None:
        super().__init__()
        self.predict, self.gammas, self.shifts = predict, tuple(gammas), tuple(shifts)

    @property
    def passes(self) -> int:
        """Network passes per batch."""
        return 1 + len(self.gammas) + len(self.shifts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(B, C, H, W)`` scaled to [0, 1]; returns ``(B, 1, H, W)`` probabilities."""
        total = self.predict(x)
        for gamma in self.gammas:
            total += self.predict(x.clamp(0.0, 1.0) ** gamma)
        for shift in self.shifts:
            total += torch.roll(self.predict(torch.roll(x, shifts=shift, dims=(-2, -1))),
                                shifts=tuple(-s for s in shift), dims=(-2, -1))
        return total / self.passes
