"""A PSPNet trained on stored frozen features: the pyramid and heads learn, the backbone is carried along
untouched, so the network saved at the end is the whole model (backbone + head) that runs on images."""

from __future__ import annotations

import torch
from torch import nn

from study.models.pspnet import PSPNet


class FrozenFeatureHead(nn.Module):
    """forward(maps) = PSPNet logits from the stored stages (concatenated on channels), at stride x their size.

    `net` is the whole PSPNet; its backbone's parameters are frozen and never run here. `param_groups` hands the
    optimizer the pyramid and heads only.
    """

    def __init__(self, net: PSPNet, stride: int):
        super().__init__()
        self.net = net
        self.stride = stride
        self.splits = list(net.backbone.feature_info.channels())
        for p in net.backbone.parameters():
            p.requires_grad_(False)
        net.backbone.eval()

    def forward(self, maps: torch.Tensor, *, sample_stride: int = 1) -> dict[str, torch.Tensor]:
        features = torch.split(maps, self.splits, dim=1)
        size = (maps.shape[-2] * self.stride, maps.shape[-1] * self.stride)
        return self.net.decode(features, size, sample_stride=sample_stride)

    def train(self, mode: bool = True) -> FrozenFeatureHead:
        super().train(mode)
        self.net.backbone.eval()  # its statistics are the ones the stored maps were computed with
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"backbone": [], "new": [p for p in self.net.parameters() if p.requires_grad]}
