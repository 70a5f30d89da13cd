"""The optimiser (SGD, or AdamW) with the backbone / new-layer parameter groups, and the poly learning-rate schedule."""

from __future__ import annotations

import torch

from study.config import TrainConfig


def poly_lr(base_lr: float, step: int, total_steps: int, power: float) -> float:
    """lr at `step` (0-based) of `total_steps`: base_lr * (1 - step / total_steps) ** power."""
    return base_lr * (1.0 - min(step, total_steps) / total_steps) ** power


def scheduled_lr(base_lr: float, step: int, cfg: TrainConfig) -> float:
    """The poly lr at `step` (0-based), times the linear warm-up min(1, (step + 1) / warmup_steps) when set.

    With warmup_steps = W the first step runs at base_lr * poly / W and step W - 1 reaches the full poly lr.
    """
    lr = poly_lr(base_lr, step, cfg.steps, cfg.poly_power)
    if cfg.warmup_steps and step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    return lr


def build_optimizer(groups: dict[str, list[torch.nn.Parameter]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Backbone at lr, new layers (pyramid, heads) at lr x head_lr_mult; weight decay on every parameter (SGD's
    L2 term, or AdamW's decoupled decay)."""
    param_groups = [
        {"params": groups["backbone"], "lr": cfg.lr, "base_lr": cfg.lr, "name": "backbone"},
        {"params": groups["new"], "lr": cfg.lr * cfg.head_lr_mult, "base_lr": cfg.lr * cfg.head_lr_mult,
         "name": "new"},
    ]
    used = [g for g in param_groups if g["params"]]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(used, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(used, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> float:
    """Apply the schedule for `step` to every group; returns the base group's lr."""
    for group in optimizer.param_groups:
        group["lr"] = scheduled_lr(group["base_lr"], step, cfg)
    return scheduled_lr(cfg.lr, step, cfg)
