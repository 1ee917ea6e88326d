"""Slice-wise inference as MONAI inferers: every slice, or only the slab and in-plane box of the atrium.

Both take a preprocessed channel-first volume and a network call that maps a batch of stacked
slices to probabilities (optionally wrapped in test-time augmentation), and return a
:class:`~atriumseg.pipeline.inference.regions.Crop`: the probabilities they computed and where.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai.inferers import Inferer, SliceInferer
from monai.transforms import KeepLargestConnectedComponent

from atriumseg.pipeline.inference.regions import Crop, bounding_box
from atriumseg.transforms.context import StackNeighbours

Predict = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) slices -> (B, 1, H, W) probabilities


class SliceRunner:
    """Chosen slices of a volume, each stacked with its neighbours, through MONAI's ``SliceInferer``."""

    def __init__(self, slice_dim: int, context: int, batch_size: int, device: torch.device) -> None:
        self.slice_dim = slice_dim
        self._stack = StackNeighbours(slice_dim, context)
        self._inferer = SliceInferer(
            spatial_dim=slice_dim, roi_size=(-1, -1), sw_batch_size=batch_size, sw_device=device,
            device=torch.device("cpu"), progress=False,
        )

    def __call__(self, volume: torch.Tensor, indices: torch.Tensor, predict: Predict,
                 box: Sequence[slice] = ()) -> torch.Tensor:
        """Probabilities ``(1, ...)`` of the slices at ``indices``, cropped in-plane to ``box``.

        Only these slices are stacked with their neighbours, never the whole volume.
        """
        return self._inferer(self._stack(volume[tuple(box)], indices)[None], predict)[0]


class SliceInference(Inferer):
    """Every slice of the volume through the network."""

    def __init__(self, runner: SliceRunner) -> None:
        super().__init__()
        self.runner = runner

    def __call__(self, inputs: torch.Tensor, network: Predict, *args: object, **kwargs: object) -> Crop:
        slices = torch.arange(inputs.shape[self.runner.slice_dim + 1], device=inputs.device)
        return Crop(self.runner(inputs, slices, network), tuple(slice(0, n) for n in (1, *inputs.shape[1:])))


@dataclass(frozen=True)
class FocusSettings:
    """How :class:`FocusedSliceInference` looks for the atrium.

    ``step_mm``: the locating pass segments one whole slice this far apart. ``slack_px``: in-plane
    room around the located atrium for what the sampled slices did not see. ``context_divisors``:
    beyond that, room for the network's field of view in units of its pooling divisor (32 px at
    depth 4, about two thirds of the theoretical field, where its weight has all but vanished; the
    README's speed section gives the measured trade-off). ``grow_slices``: slices added at a time
    while the slab grows. ``attempts``: times the box may widen before the whole volume is
    segmented instead.
    """

    step_mm: float = 20.0
    slack_px: int = 16
    context_divisors: int = 4
    grow_slices: int = 4
    attempts: int = 3


class FocusedSliceInference(SliceInference):
    """Only the atrium's in-plane box on the slab of slices that holds it goes through the network.

    A locating pass segments one whole slice every ``step_mm`` and keeps the largest detection. Its
    in-plane box, grown by the slack and a context band for the network's field of view (and aligned
    to the pooling grid, so a crop pools as the whole slice does), is segmented on the slab between
    the first and last detection; the slab grows until its outermost slices are empty (nothing
    beyond an empty slice can join the atrium's component). Should the atrium come within the
    context band of a cut side, the box widens and the slab is redone. Elsewhere the probability is
    0, which clean-up (keeping the largest component) would make of it anyway. When either pass
    finds nothing, or the box keeps widening, every slice runs.

    Given ``near``, the box where another network (an ensemble's first member) found the atrium on this
    volume's grid, the locating pass is skipped and the slab starts from that box.
    """

    def __init__(self, runner: SliceRunner, threshold: float, divisor: int,
                 settings: FocusSettings = FocusSettings()) -> None:
        super().__init__(runner)
        self.threshold, self.divisor, self.settings = threshold, divisor, settings
        self._largest = KeepLargestConnectedComponent(applied_labels=[1])

    def __call__(self, inputs: torch.Tensor, network: Predict, slice_mm: float = 1.0,
                 near: Sequence[slice] | None = None, *args: object, **kwargs: object) -> Crop:
        """``slice_mm`` is the distance between the slices of ``inputs``; ``near`` (spatial axes) skips locating."""
        if near is not None:
            found = self._refine(inputs, network, self._box(inputs.shape, near), near[self.runner.slice_dim])
        else:
            found = self._focused(inputs, network, max(1, round(self.settings.step_mm / slice_mm)))
        return found or super().__call__(inputs, network)

    @property
    def context_px(self) -> int:
        """The band kept between the atrium and a cut side, for the network's field of view."""
        return self.settings.context_divisors * self.divisor

    @property
    def _plane(self) -> list[int]:
        """The in-plane axes of a channel-first volume."""
        return [d for d in range(1, 4) if d != self.runner.slice_dim + 1]

    def _box(self, shape: torch.Size, spans: Sequence[slice]) -> list[slice]:
        """The in-plane box (with slack and context band) around ``spans``, the atrium's extent on spatial axes."""
        return self._widen(shape, self._plane, [slice(None)] * 4, [spans[d - 1] for d in self._plane])

    def _focused(self, volume: torch.Tensor, predict: Predict, stride: int) -> Crop | None:
        dim = self.runner.slice_dim + 1
        sampled = torch.arange(min(stride, volume.shape[dim]) // 2, volume.shape[dim], stride, device=volume.device)
        found = self.runner(volume, sampled, predict) > self.threshold
        if not found.any():
            return None
        atrium = self._largest(found.to(torch.uint8))[0].movedim(dim - 1, 0)  # (sampled slice, plane, plane)
        hits = sampled[torch.nonzero(atrium.flatten(1).any(1)).flatten()]
        box = self._widen(volume.shape, self._plane, [slice(None)] * 4, bounding_box(atrium.any(0)))
        return self._refine(volume, predict, box, slice(int(hits[0]), int(hits[-1]) + 1))

    def _refine(self, volume: torch.Tensor, predict: Predict, box: list[slice], slab: slice) -> Crop | None:
        """The slab grown from ``slab`` in ``box``, the box widened while the atrium comes near a cut side."""
        dim, plane = self.runner.slice_dim + 1, self._plane
        for _ in range(self.settings.attempts):
            crop = self._slab(volume, predict, box, slab.start, slab.stop)
            inside = (crop.prob > self.threshold).to(torch.uint8)
            if not inside.any():
                return None
            footprint = bounding_box(self._largest(inside)[0].movedim(dim - 1, 0).any(0))
            spans = zip(plane, footprint, strict=True)
            reach = [slice(box[d].start + s.start, box[d].start + s.stop) for d, s in spans]
            if all(_clear(box[d], s, volume.shape[d], self.context_px) for d, s in zip(plane, reach, strict=True)):
                return crop
            box = self._widen(volume.shape, plane, box, reach)
        return None

    def _widen(self, shape: torch.Size, plane: list[int], box: list[slice], spans: Sequence[slice]) -> list[slice]:
        """``box`` widened in-plane to cover ``spans`` with the slack and the context band to spare, its
        sides on the pooling grid (a multiple of the network's divisor) so crops pool as whole slices do."""
        step, room = self.divisor, self.settings.slack_px + self.context_px
        wider = list(box)
        for axis, span in zip(plane, spans, strict=True):
            start = max(0, span.start - room) // step * step
            stop = min(shape[axis], -(-(span.stop + room) // step) * step)
            if box[axis] != slice(None):
                start, stop = min(start, box[axis].start), max(stop, box[axis].stop)
            wider[axis] = slice(start, stop)
        return wider

    def _slab(self, volume: torch.Tensor, predict: Predict, box: list[slice], lo: int, hi: int) -> Crop:
        """Probabilities in ``box`` on slices ``lo:hi``, grown outwards ``grow_slices`` at a time until the
        outermost slice on each side is empty."""
        dim, grow = self.runner.slice_dim + 1, self.settings.grow_slices
        prob = torch.zeros([1] + [volume.shape[d] if d == dim else box[d].stop - box[d].start for d in range(1, 4)])

        def run(start: int, stop: int) -> None:
            where = [slice(None)] * 4
            where[dim] = slice(start, stop)
            prob[tuple(where)] = self.runner(volume, torch.arange(start, stop, device=volume.device), predict, box)

        def filled(index: int) -> bool:
            return bool((prob.select(dim, index) > self.threshold).any())

        run(lo, hi)
        while lo > 0 and filled(lo):
            lo, stop = max(0, lo - grow), lo
            run(lo, stop)
        while hi < volume.shape[dim] and filled(hi - 1):
            start, hi = hi, min(volume.shape[dim], hi + grow)
            run(start, hi)
        where, region = [slice(None)] * 4, list(box)
        where[dim] = region[dim] = slice(lo, hi)
        region[0] = slice(0, 1)
        return Crop(prob[tuple(where)], tuple(region))


def _clear(cut: slice, span: slice, size: int, context: int) -> bool:
    """Whether ``span`` stays ``context`` away from each side of ``cut`` that is not the volume's edge."""
    return (cut.start == 0 or span.start - cut.start >= context) and (
        cut.stop == size or cut.stop - span.stop >= context
    )

