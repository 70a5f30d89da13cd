"""Training checkpoints: model, optimizer, step and RNG states, written atomically, read as data only.

A checkpoint is loaded with `torch.load(weights_only=True)`: tensors, numbers, strings, lists and dicts, nothing
that runs code. The RNG states are stored in that form (Python's and NumPy's Mersenne Twister keys as int64
tensors); checkpoints written before that hold NumPy arrays, which a narrow allow-list (array reconstruction, the
uint32 dtype) still reads. Anything else in a checkpoint.pt is refused with one line and never executed.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.atomic import atomic_write_with

CHECKPOINT = "checkpoint.pt"
# what a NumPy RNG state pickled by older checkpoints needs, and nothing more
NUMPY_STATE_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def rng_state() -> dict[str, Any]:
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "keys": torch.tensor(keys, dtype=torch.int64), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    if isinstance(py, dict):
        random.setstate((py["version"], tuple(int(k) for k in py["keys"].tolist()), py["gauss"]))
    else:  # an older checkpoint: the tuple as random.getstate() returns it
        random.setstate(py)
    if isinstance(npy, dict):
        np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                             npy["cached_gaussian"]))
    else:
        np.random.set_state(npy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    config_hash: str, extra: dict[str, Any] | None = None) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(),
             "config_hash": config_hash, **(extra or {})}
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint as data; a file that is not one (damaged, foreign, or asking to run code) -> ValueError."""
    try:
        with torch.serialization.safe_globals(NUMPY_STATE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"model", "optimizer", "step", "rng"} <= set(state):
            raise ValueError("no model, optimizer, step or rng entry")
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for damaged, foreign or unsafe files
        text = str(e)
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsafe:
            reason = f"refused: it asks to run {unsafe.group(1)}, and checkpoints are loaded as data only"
        else:
            reason = next((line.strip() for line in text.splitlines() if line.strip()), type(e).__name__)[:200]
        raise ValueError(f"{path}: not a usable checkpoint ({reason}); delete it to start this cell over") from None
    return state
