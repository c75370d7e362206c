"""A small, standard U-Net (Ronneberger et al., 2015) for the segmentation examples.

``depth`` down-sampling steps, each a double 3x3 convolution (BatchNorm, ReLU)
followed by 2x2 max pooling; a bottleneck; ``depth`` up-sampling steps with a
2x2 transposed convolution, concatenation with the skip connection and a
double convolution; a 1x1 head to ``num_classes`` logits. Channels double at
each step down, from ``base_channels``. Padding keeps the spatial size, so
inputs whose sides are divisible by ``2 ** depth`` come back at full size.
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net mapping ``[N, in_channels, H, W]`` images to ``[N, num_classes, H, W]`` logits.

    Args:
        in_channels: channels of the input image (3 for RGB).
        num_classes: output channels, one logit per class.
        base_channels: channels after the first block; doubled at each level.
        depth: number of down-sampling steps; ``H`` and ``W`` must be divisible
            by ``2 ** depth``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 4, base_channels: int = 16, depth: int = 3) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
            ("depth", depth),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]

        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.down.append(DoubleConv(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1])
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsample.append(nn.ConvTranspose2d(width * 2, width, kernel_size=2, stride=2))
            self.up.append(DoubleConv(width * 2, width))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-pixel class logits with the spatial size of ``x``."""
        multiple = 2**self.depth
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input [N, {self.in_channels}, H, W], got {list(x.shape)}")
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"input height and width must be divisible by 2**depth = {multiple}, "
                f"got {x.shape[-2]}x{x.shape[-1]}; resize or pad the images"
            )
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips), strict=True):
            x = block(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)
