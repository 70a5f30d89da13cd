"""PSPNet: dilated backbone -> pyramid pooling (or none: the dilated-FCN baseline) -> head; aux head on stage -2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from study.config import PAPER_PYRAMID, ModelConfig, PyramidSpec
from study.models.backbone import build_backbone
from study.models.heads import SegHead
from study.models.ppm import PyramidPooling


def sampled_bilinear_weights(n_in: int, n_out: int, stride: int, align_corners: bool) -> torch.Tensor:
    """(ceil(n_out / stride), n_in): row i holds the weights that 1-D linear upsampling from n_in to n_out points
    gives output point stride*i, under F.interpolate's own convention (bilinear upsampling is this, per axis)."""
    eye = torch.eye(n_in).unsqueeze(0)  # (1, n_in, n_in): channel k is the k-th input point alone
    weights = F.interpolate(eye, size=n_out, mode="linear", align_corners=align_corners)[0]  # (n_in, n_out)
    return weights[:, ::stride].T.contiguous()


class PSPNet(nn.Module):
    """Returns logits, never a loss: {"out": (N, K, H, W)} plus {"aux": ...} in training mode with an aux head."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, pyramid: PyramidSpec = PAPER_PYRAMID,
                 head_channels: int = 512, aux_channels: int = 256, dropout: float = 0.1, aux_weight: float = 0.4):
        super().__init__()
        channels = backbone.feature_info.channels()
        self.backbone = backbone
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.pyramid = pyramid
        last = channels[-1]
        self.ppm = PyramidPooling(last, pyramid) if pyramid.bins else None
        head_in = self.ppm.out_channels if self.ppm is not None else last
        self.head = SegHead(head_in, head_channels, num_classes, dropout)
        self.aux_head = None
        if aux_weight > 0:
            if len(channels) < 2:
                raise ValueError("model.out_indices: an aux head needs two backbone stages")
            self.aux_head = SegHead(channels[-2], aux_channels, num_classes, dropout)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> PSPNet:
        """The network a ModelConfig describes: its backbone (study.models.backbone), its pyramid
        (ModelConfig.pyramid) and every head option, read here, beside the constructor that takes them."""
        return cls(build_backbone(cfg), num_classes, pyramid=cfg.pyramid, head_channels=cfg.head_channels,
                   aux_channels=cfg.aux_channels, dropout=cfg.dropout, aux_weight=cfg.aux_weight)

    def forward(self, x: torch.Tensor, *, sample_stride: int = 1) -> dict[str, torch.Tensor]:
        """Logits at every pixel of x, or at every sample_stride-th pixel in each direction (see `decode`)."""
        return self.decode(self.backbone(x), x.shape[-2:], sample_stride=sample_stride)

    def decode(self, features: Sequence[torch.Tensor], size: torch.Size | tuple[int, int], *,
               sample_stride: int = 1) -> dict[str, torch.Tensor]:
        """Logits at `size` from the backbone's maps (stored frozen features enter here).

        With sample_stride s > 1 only the pixels (s*i, s*j) of that grid are computed, each exactly as the
        full-size upsampling gives it: what a loss over a regular subsample of the label's pixels needs.
        """
        top = features[-1]
        if self.ppm is not None:
            top = self.ppm(top)
        out = {"out": self._upsample(self.head(top), size, sample_stride)}
        if self.training and self.aux_head is not None:
            out["aux"] = self._upsample(self.aux_head(features[-2]), size, sample_stride)
        return out

    def _upsample(self, logits: torch.Tensor, size: torch.Size | tuple[int, int], stride: int) -> torch.Tensor:
        corners = self.pyramid.align_corners
        if stride == 1:
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=corners)
        rows = sampled_bilinear_weights(logits.shape[-2], size[0], stride, corners).to(logits)
        cols = sampled_bilinear_weights(logits.shape[-1], size[1], stride, corners).to(logits)
        return torch.einsum("nkhw,ih,jw->nkij", logits, rows, cols)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Backbone parameters vs new layers (pyramid and heads), which train with a larger learning rate."""
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        return {"backbone": backbone, "new": [p for p in self.parameters() if id(p) not in ids]}
