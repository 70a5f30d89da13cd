"""Dilated backbones from timm (`features_only`), optionally initialised (strictly) from a local checkpoint or a
named source inside an installed package (study.models.pretrained), optionally with frozen batch norm."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn

from study.config import ModelConfig
from study.models import pretrained as named
from study.models.pretrained import file_sha256

__all__ = ["build_backbone", "file_sha256", "load_backbone_weights", "pretrained_source", "weights_digest", "RANDOM"]


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """A timm feature extractor returning the maps at `cfg.out_indices` with the requested output stride.

    Channels are read from `backbone.feature_info.channels()`; small CPU backbones come from timm's ResNet
    arguments (`layers`, `channels`, `stem_width`, `stem_type`). Nothing is downloaded. With
    `backbone_bn: frozen` every batch norm of the backbone keeps its (pretrained) statistics and affine terms.
    """
    named.check_backbone(cfg)
    kwargs: dict = {"features_only": True, "pretrained": False, "out_indices": tuple(cfg.out_indices),
                    "output_stride": cfg.output_stride}
    for name in ("layers", "channels", "stem_width", "stem_type"):
        value = getattr(cfg, name)
        if value is not None:
            kwargs[name] = list(value) if isinstance(value, tuple) else value
    try:
        if cfg.freeze_backbone and not cfg.pretrained:
            # frozen random features: one fixed draw, so the cached maps and every run's saved network agree
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                backbone = timm.create_model(cfg.backbone, **kwargs)
        else:
            backbone = timm.create_model(cfg.backbone, **kwargs)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"model.backbone: cannot build {cfg.backbone!r} ({str(e).splitlines()[0]})") from None
    if cfg.pretrained:
        load_backbone_weights(backbone, cfg.pretrained, cfg.pretrained_partial)
    if cfg.backbone_bn == "frozen":
        backbone = freeze_batch_norm_2d(backbone)
    return backbone


RANDOM = "random initialisation (seed 0)"
MIN_MATCH = 0.99  # share of the backbone's tensors a checkpoint must supply unless pretrained_partial


def _weights_file(cfg: ModelConfig) -> tuple[Path, str]:
    """(path, sha256) of model.pretrained: a named source checked against its pinned digest, or a local file."""
    if named.is_named(cfg.pretrained):
        return named.verified_file(cfg.pretrained)
    path = Path(cfg.pretrained)
    if not path.is_file():
        raise ValueError(f"model.pretrained: checkpoint {cfg.pretrained} not found")
    return path, file_sha256(path)


def pretrained_source(cfg: ModelConfig) -> str:
    """"from scratch", or "pretrained (<file name>, sha256 <first 8 hex>)" for the record and the report."""
    if not cfg.pretrained:
        return "from scratch"
    path, digest = _weights_file(cfg)
    return f"pretrained ({path.name}, sha256 {digest[:8]})"


def weights_digest(cfg: ModelConfig) -> str:
    """"<file name>, sha256 <full digest>" of the backbone's initial weights (the feature cache's key), or RANDOM."""
    if not cfg.pretrained:
        return RANDOM
    path, digest = _weights_file(cfg)
    return f"{path.name}, sha256 {digest}"


def load_backbone_weights(backbone: nn.Module, path: str, partial: bool = False) -> tuple[int, int]:
    """Load a local state dict (or {"model"|"state_dict": ...}) or a named source into the backbone; return
    (matched, total).

    Tensors match by name (a leading "module." is dropped) and shape. Fewer than 99% of the backbone's tensors
    matched is a one-line error unless `partial`; the count is printed either way.
    """
    if named.is_named(path):
        state, file = named.load_named(path)
        return _load_matching(backbone, state, file.name, path, partial)
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
    if not isinstance(state, dict):
        raise ValueError(f"model.pretrained: {path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return _load_matching(backbone, state, file.name, path, partial)


def _load_matching(backbone: nn.Module, state: dict[str, torch.Tensor], name: str, path: str, partial: bool
                   ) -> tuple[int, int]:
    own = backbone.state_dict()
    # timm's features_only wrapper keeps the classifier's module names, minus the head: match by name and shape
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    total = len(own)
    print(f"model.pretrained: {len(matched)}/{total} backbone tensors matched in {name}")
    if not matched:
        raise ValueError(f"model.pretrained: no weight in {path} matches backbone {type(backbone).__name__}")
    if len(matched) < MIN_MATCH * total and not partial:
        raise ValueError(f"model.pretrained: {path} matches only {len(matched)}/{total} backbone tensors "
                         f"(< {MIN_MATCH:.0%}); set model.pretrained_partial=true to load it anyway")
    backbone.load_state_dict(matched, strict=False)
    return len(matched), total
