"""The classic 2D U-Net, written out block by block."""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by ReLU; padding keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then a double convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Transposed-convolution upsampling, skip concatenation, then a double convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """2D U-Net returning one channel of raw logits.

    Input ``(B, in_channels, H, W)`` with H and W divisible by ``2 ** (depth - 1)``
    (the pipeline pads slices to that size); output ``(B, 1, H, W)`` logits, no sigmoid.
    ``depth`` counts resolution levels including the bottleneck; channels double per level
    from ``width``. At width 64, depth 4, one input channel this is the reference network
    of 7,696,193 parameters.
    """

    def __init__(self, in_channels: int = 1, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"UNet depth must be at least 2 (got {depth})")
        if width < 1 or in_channels < 1:
            raise ValueError(f"UNet width and in_channels must be positive (got {width}, {in_channels})")
        self.divisor = 2 ** (depth - 1)
        channels = [width * 2**level for level in range(depth)]
        self.inc = DoubleConv(in_channels, channels[0])
        self.downs = nn.ModuleList(Down(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:], strict=True))
        self.ups = nn.ModuleList(Up(c_in, c_out) for c_in, c_out in zip(channels[:0:-1], channels[-2::-1], strict=True))
        self.outc = nn.Conv2d(channels[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)
