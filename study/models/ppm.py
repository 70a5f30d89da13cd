"""The pyramid pooling module of PSPNet (Zhao et al., 2017, Sec. 3.2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from study.config import BRANCHES, POOLS, PPM_NORMS


def _pool(kind: str, bin_size: int) -> nn.Module:
    if kind == "none":  # the capacity-matched FCN: the branch sees the unpooled map
        return nn.Identity()
    if kind == "avg":
        return nn.AdaptiveAvgPool2d(bin_size)
    if kind == "max":
        return nn.AdaptiveMaxPool2d(bin_size)
    raise ValueError(f"pool: must be one of {POOLS}, got {kind!r}")


GN_GROUP_CHANNELS = 8  # "gn": GroupNorm over groups of (up to) 8 channels, per image


def _norm(kind: str, channels: int) -> list[nn.Module]:
    """The branch's normalisation after its 1x1 conv: BatchNorm (paper), none, or GroupNorm (batch-independent)."""
    if kind == "bn":
        return [nn.BatchNorm2d(channels)]
    if kind == "gn":
        return [nn.GroupNorm(max(1, channels // GN_GROUP_CHANNELS), channels)]
    if kind == "none":
        return []
    raise ValueError(f"norm: must be one of {PPM_NORMS}, got {kind!r}")


class PyramidPooling(nn.Module):
    """Pools x into bin x bin grids, projects each with 1x1 conv + BN + ReLU, upsamples, concatenates with x.

    forward(x) = cat([x, branch_1(x), ..., branch_N(x)], dim=1); each branch is adaptive avg|max pooling, then a
    1x1 conv without bias + BatchNorm + ReLU, then bilinear upsampling to x's size. `reduction` (the paper's DR)
    sets the branch width only: C // N with DR (output 2C), C without (output C * (1 + N)), as the official code
    does with one bin. `branch="raw"` concatenates the raw pooled maps (no conv, BN or ReLU; full width, so no
    DR): a separate option for study that maps to no row of the paper. `norm` replaces the branch's BatchNorm:
    "none" (the conv gets a bias; as detectron2's ASPP image-pooling branch) or "gn" (GroupNorm, per image).
    `pool="none"` is the capacity-matched FCN: the same branches, convolutions and concatenation on the unpooled
    map, so it has the pyramid's parameters and sees no context beyond the backbone's receptive field.
    """

    def __init__(self, in_channels: int, *, bins: Sequence[int] = (1, 2, 3, 6), pool: str = "avg",
                 reduction: bool = True, align_corners: bool = True, branch: str = "conv", norm: str = "bn"):
        super().__init__()
        if not bins:
            raise ValueError("bins: the pyramid needs at least one bin (use no PyramidPooling for the FCN)")
        if any(b < 1 for b in bins):
            raise ValueError(f"bins: every bin must be >= 1, got {tuple(bins)}")
        if branch not in BRANCHES:
            raise ValueError(f"branch: must be one of {BRANCHES}, got {branch!r}")
        if norm not in PPM_NORMS:
            raise ValueError(f"norm: must be one of {PPM_NORMS}, got {norm!r}")
        if branch == "raw" and reduction:
            raise ValueError("branch 'raw' concatenates pooled maps at full width: it takes no reduction (DR)")
        if branch == "raw" and norm != "bn":
            raise ValueError("branch 'raw' has no conv or norm: it takes no norm")
        self.bins = tuple(bins)
        self.branch = branch
        self.pool = pool
        self.reduction = reduction
        self.norm = norm
        self.align_corners = align_corners
        branch_channels = in_channels // len(self.bins) if reduction else in_channels
        if branch_channels < 1:
            raise ValueError(f"in_channels {in_channels} is too few for {len(self.bins)} reduced branches")
        branches = []
        for b in self.bins:
            layers: list[nn.Module] = [_pool(pool, b)]
            if branch == "conv":
                layers += [nn.Conv2d(in_channels, branch_channels, 1, bias=norm == "none"),
                           *_norm(norm, branch_channels), nn.ReLU(inplace=True)]
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.out_channels = in_channels + branch_channels * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for branch in self.branches:
            y = branch(x)
            outs.append(y if y.shape[-2:] == size else
                        F.interpolate(y, size=size, mode="bilinear", align_corners=self.align_corners))
        return torch.cat(outs, dim=1)
