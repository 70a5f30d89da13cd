"""The training objective: cross-entropy on the main logits plus aux_weight x cross-entropy on the aux logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor, aux_weight: float,
                      ignore_index: int = 255) -> torch.Tensor:
    loss = F.cross_entropy(outputs["out"].float(), target, ignore_index=ignore_index)
    if aux_weight > 0 and "aux" in outputs:
        loss = loss + aux_weight * F.cross_entropy(outputs["aux"].float(), target, ignore_index=ignore_index)
    return loss
