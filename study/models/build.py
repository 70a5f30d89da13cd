"""ModelConfig -> PSPNet."""

from __future__ import annotations

from study.config import ModelConfig
from study.models.backbone import build_backbone
from study.models.pspnet import PSPNet


def build_model(cfg: ModelConfig, num_classes: int) -> PSPNet:
    return PSPNet(build_backbone(cfg), num_classes, bins=cfg.pyramid_bins, pool=cfg.pool, reduction=cfg.reduction,
                  align_corners=cfg.align_corners, head_channels=cfg.head_channels, aux_channels=cfg.aux_channels,
                  dropout=cfg.dropout, aux_weight=cfg.aux_weight,
                  branch=cfg.ppm_branch, ppm_norm=cfg.ppm_norm)
