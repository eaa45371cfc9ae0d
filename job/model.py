"""The tutorial's ResNet9, with a channel multiplier for quick runs."""

from __future__ import annotations

import torch
from torch import nn


def channels(base: int, width: float) -> int:
    """Channels of a layer that has ``base`` at MODEL_WIDTH=1 (at least 1)."""
    return max(1, round(base * width))


def block_channels(width: float) -> list[tuple[int, int]]:
    """(in, out) channels of ResNet9's eight conv blocks at ``width``, in the order
    :class:`ResNet9` builds them: conv1, conv2, res1 (2), conv3, conv4, res2 (2)."""
    c64, c128, c256, c512 = (channels(c, width) for c in (64, 128, 256, 512))
    return [
        (3, c64),
        (c64, c128),
        (c128, c128),
        (c128, c128),
        (c128, c256),
        (c256, c512),
        (c512, c512),
        (c512, c512),
    ]


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3×3 conv + BatchNorm + ReLU, then an optional 2×2 max-pool (the tutorial's block)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(nn.Module):
    """64 → 128+pool → res(128) → 256+pool → 512+pool → res(512) → pool(4) → linear.

    At ``width=1`` this is the tutorial's model exactly: 6,575,370 parameters.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        b = block_channels(width)
        self.conv1 = conv_block(*b[0])
        self.conv2 = conv_block(*b[1], pool=True)
        self.res1 = nn.Sequential(conv_block(*b[2]), conv_block(*b[3]))
        self.conv3 = conv_block(*b[4], pool=True)
        self.conv4 = conv_block(*b[5], pool=True)
        self.res2 = nn.Sequential(conv_block(*b[6]), conv_block(*b[7]))
        c512 = b[-1][1]
        self.classifier = nn.Sequential(
            nn.MaxPool2d(4), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c512, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out = self.res1(out) + out
        out = self.conv4(self.conv3(out))
        out = self.res2(out) + out
        return self.classifier(out)
