"""The pyramid pooling module of PSPNet (Zhao et al., 2017, Sec. 3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from study.config import PAPER_PYRAMID, PyramidSpec

GN_GROUP_CHANNELS = 8  # "gn": GroupNorm over groups of (up to) 8 channels, per image


def _pool(kind: str, bin_size: int) -> nn.Module:
    """The branch's pooling; kind "none" (the capacity-matched FCN): the branch sees the unpooled map."""
    if kind == "none":
        return nn.Identity()
    return nn.AdaptiveAvgPool2d(bin_size) if kind == "avg" else nn.AdaptiveMaxPool2d(bin_size)


def _norm(kind: str, channels: int) -> list[nn.Module]:
    """The branch's normalisation after its 1x1 conv: BatchNorm (paper), none, or GroupNorm (batch-independent)."""
    if kind == "bn":
        return [nn.BatchNorm2d(channels)]
    if kind == "gn":
        return [nn.GroupNorm(max(1, channels // GN_GROUP_CHANNELS), channels)]
    return []  # "none" (PyramidSpec admits no other kind)


class PyramidPooling(nn.Module):
    """Pools x into bin x bin grids, projects each with 1x1 conv + BN + ReLU, upsamples, concatenates with x.

    forward(x) = cat([x, branch_1(x), ..., branch_N(x)], dim=1); each branch is adaptive avg|max pooling, then a
    1x1 conv without bias + BatchNorm + ReLU, then bilinear upsampling to x's size. The options are one
    PyramidSpec (study/config.py, which checks them): `reduction` (the paper's DR) sets the branch
    width only: C // N with DR (output 2C), C without (output C * (1 + N)), as the official code does with one
    bin. `branch="raw"` concatenates the raw pooled maps (no conv, BN or ReLU; full width, so no DR): a separate
    option for study that maps to no row of the paper. `norm` replaces the branch's BatchNorm: "none" (the conv
    gets a bias; as detectron2's ASPP image-pooling branch) or "gn" (GroupNorm, per image). `pool="none"` is the
    capacity-matched FCN: the same branches, convolutions and concatenation on the unpooled map, so it has the
    pyramid's parameters and sees no context beyond the backbone's receptive field. `context="shuffled"` is the
    control for what the pooled maps carry: every branch pools the map of the image before it in the batch (the
    last image's for the first; an image alone in its batch gets zeros), so the pyramid keeps its layers, its
    parameters and its batch statistics and loses the image's own context.
    """

    def __init__(self, in_channels: int, spec: PyramidSpec = PAPER_PYRAMID):
        super().__init__()
        if not isinstance(spec, PyramidSpec):
            raise TypeError(f"PyramidPooling takes its options as one PyramidSpec, got {type(spec).__name__}")
        if not spec.bins:
            raise ValueError("bins: the pyramid needs at least one bin (use no PyramidPooling for the FCN)")
        self.spec = spec
        n = len(spec.bins)
        branch_channels = in_channels // n if spec.reduction else in_channels
        if branch_channels < 1:
            raise ValueError(f"in_channels {in_channels} is too few for {n} reduced branches")
        branches = []
        for b in spec.bins:
            layers: list[nn.Module] = [_pool(spec.pool, b)]
            if spec.branch == "conv":
                layers += [nn.Conv2d(in_channels, branch_channels, 1, bias=spec.norm == "none"),
                           *_norm(spec.norm, branch_channels), nn.ReLU(inplace=True)]
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.out_channels = in_channels + branch_channels * n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        pooled_from = x
        if self.spec.context == "shuffled":  # pooling is per image, so pooling the rolled map rolls the pooled maps
            pooled_from = x.roll(1, dims=0) if x.shape[0] > 1 else torch.zeros_like(x)
        for branch in self.branches:
            y = branch(pooled_from)
            outs.append(y if y.shape[-2:] == size else
                        F.interpolate(y, size=size, mode="bilinear", align_corners=self.spec.align_corners))
        return torch.cat(outs, dim=1)
