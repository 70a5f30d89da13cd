"""Training checkpoints: model, optimizer, step and RNG states, written atomically."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.atomic import atomic_write_with

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    config_hash: str, extra: dict[str, Any] | None = None) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(),
             "config_hash": config_hash, **(extra or {})}
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: unreadable checkpoint ({str(e).splitlines()[0]})") from None
