"""ModelConfig -> PSPNet (the one place run code asks for a model)."""

from __future__ import annotations

from study.config import ModelConfig
from study.models.pspnet import PSPNet


def build_model(cfg: ModelConfig, num_classes: int) -> PSPNet:
    return PSPNet.from_config(cfg, num_classes)
