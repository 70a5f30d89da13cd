"""Segmentation heads: 3x3 conv + BN + ReLU + dropout + 1x1 classifier (main head and auxiliary head)."""

from __future__ import annotations

from torch import nn


class SegHead(nn.Sequential):
    """Maps a feature map to per-class logits at the same resolution."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(mid_channels, num_classes, 1),
        )
        self.in_channels = in_channels
