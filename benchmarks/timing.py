"""Clocks for a benchmark worker: time spent inside the network's forward passes, and in named callables."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

_MISSING = object()


class NetworkClock:
    """Wall time, slices and pixels of every forward pass of ``network``, via forward hooks (CUDA-synchronised)."""

    def __init__(self, network: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.seconds, self.slices, self.pixels, self.calls = 0.0, 0, 0, 0
        self.input_shape: tuple[int, ...] = ()
        self._started = 0.0
        network.register_forward_pre_hook(self._before)
        network.register_forward_hook(self._after)

    def reset(self) -> None:
        """Start a new measurement."""
        self.seconds, self.slices, self.pixels, self.calls = 0.0, 0, 0, 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _before(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._sync()
        self._started = time.perf_counter()

    def _after(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._started
        self.slices += int(args[0].shape[0])
        self.pixels += int(args[0][:, 0].numel())
        self.calls += 1
        self.input_shape = tuple(args[0].shape[1:])


class StageClock:
    """Wall time spent in patched callables, summed by label; nested calls of one label count once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        """Start a new measurement."""
        self.seconds.clear()

    def _timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._depth[label] += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[label] -= 1
                if self._depth[label] == 0:
                    self.seconds[label] += time.perf_counter() - started

        return wrapper

    @contextmanager
    def patched(self, targets: list[tuple[str, object, str]]) -> Iterator[StageClock]:
        """Wrap ``owner.name`` for each ``(label, owner, name)`` while the block runs, then restore them."""
        originals = [(owner, name, vars(owner).get(name, _MISSING)) for _, owner, name in targets]
        for label, owner, name in targets:
            setattr(owner, name, self._timed(label, getattr(owner, name)))
        try:
            yield self
        finally:
            for owner, name, original in reversed(originals):
                if original is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
