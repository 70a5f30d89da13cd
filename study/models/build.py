"""ModelConfig -> PSPNet (the one place run code asks for a model), and an A/A twin's own draw of its new layers."""

from __future__ import annotations

import hashlib

import torch

from study.config import ModelConfig
from study.models.pspnet import PSPNet


def build_model(cfg: ModelConfig, num_classes: int) -> PSPNet:
    return PSPNet.from_config(cfg, num_classes)


def twin_seed(seed: int, twin: int) -> int:
    """The generator seed of twin `twin` (> 0) of run seed `seed`: a digest, so it meets no run seed's stream."""
    return int.from_bytes(hashlib.sha256(f"twin {seed} {twin}".encode()).digest()[:7], "big")


def redraw_new_layers(model: PSPNet, seed: int, twin: int) -> None:
    """Make `model` twin `twin` of its seed: the pyramid and heads initialised afresh from twin_seed(seed, twin),
    and the global generator left on that stream, so the dropout masks differ as well.

    What two variants of one seed share stays shared: the backbone's draw (built first from the run seed), the data
    order and the augmentation (seeded by the run seed alone). Twin 0 is the run itself: nothing changes.
    """
    if twin == 0:
        return
    torch.manual_seed(twin_seed(seed, twin))
    for part in (model.ppm, model.head, model.aux_head):
        for module in part.modules() if part is not None else ():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
