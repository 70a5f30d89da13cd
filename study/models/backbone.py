"""Dilated backbones from timm (`features_only`), optionally initialised from a local checkpoint."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from study.config import ModelConfig


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """A timm feature extractor returning the maps at `cfg.out_indices` with the requested output stride.

    Channels are read from `backbone.feature_info.channels()`; small CPU backbones come from timm's ResNet
    arguments (`layers`, `channels`, `stem_width`, `stem_type`). Nothing is downloaded.
    """
    kwargs: dict = {"features_only": True, "pretrained": False, "out_indices": tuple(cfg.out_indices),
                    "output_stride": cfg.output_stride}
    for name in ("layers", "channels", "stem_width", "stem_type"):
        value = getattr(cfg, name)
        if value is not None:
            kwargs[name] = list(value) if isinstance(value, tuple) else value
    try:
        backbone = timm.create_model(cfg.backbone, **kwargs)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"model.backbone: cannot build {cfg.backbone!r} ({str(e).splitlines()[0]})") from None
    if cfg.pretrained:
        load_backbone_weights(backbone, cfg.pretrained)
    return backbone


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load a local state dict (or {"model"|"state_dict": ...}); keys that do not match are skipped."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"model.pretrained: checkpoint {path} not found")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one line
        raise ValueError(f"model.pretrained: cannot read {path} ({str(e).splitlines()[0]})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = backbone.state_dict()
    # timm's features_only wrapper keeps the classifier's module names, minus the head: match by name and shape
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"model.pretrained: no weight in {path} matches backbone {type(backbone).__name__}")
    backbone.load_state_dict(matched, strict=False)
