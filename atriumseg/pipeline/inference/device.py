"""Device and precision policy: where the network runs and in which floating-point type."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``.

    A name torch does not know, or CUDA asked for where there is none, raises a ValueError that says so.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif resolved.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return resolved


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` ('auto', 'bfloat16', 'float16', 'float32'); None means float32."""
    if precision == "float32":
        return None
    if precision in ("bfloat16", "float16"):
        return getattr(torch, precision)
    if precision != "auto":
        raise ValueError(f"precision must be auto, bfloat16, float16 or float32, got {precision!r}")
    if device.type == "cuda":  # bfloat16 convolutions need compute capability 8.0 (Ampere) on that very GPU;
        major, _ = torch.cuda.get_device_capability(device)  # is_bf16_supported() also says yes to emulation
        return torch.bfloat16 if major >= 8 else torch.float16
    bf16_cpu = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return torch.bfloat16 if bf16_cpu else None


class Probabilities(nn.Module):
    """The network behind autocast and channels_last: a batch of slices in, float32 sigmoid probabilities out.

    The network itself runs under ``torch.inference_mode``; the sigmoid, outside it, gives an
    ordinary tensor that later steps may write into.
    """

    def __init__(self, network: nn.Module, dtype: torch.dtype | None, device: torch.device) -> None:
        super().__init__()
        self.network, self.dtype, self.device_type = network, dtype, device.type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(
            self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            logits = self.network(x).float()
        return torch.sigmoid(logits)
