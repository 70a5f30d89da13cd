"""The run record: one JSON file per run, the contract between the engine and the results/report layers.

This module must not import torch: reports render from copied results on machines without it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from study.atomic import atomic_write_text

STATUSES = ("completed", "failed", "pruned")
RECORD_FILE = "record.json"


@dataclass(frozen=True)
class RunRecord:
    """What one run measured and how. `config` is the fully resolved Config.to_dict()."""

    id: str  # "<variant>__s<seed>"
    study: str
    variant: str
    seed: int
    config: dict[str, Any]
    config_hash: str
    status: str  # completed | failed | pruned
    error: str = ""
    # miou (all classes, absent count 0), miou_present (nan-mean over present), pixel_acc, mean_acc,
    # per_class_iou {class name: IoU}; all as fractions in [0, 1]; convention names the mIoU rule.
    metrics: dict[str, Any] = field(default_factory=dict)
    # [{step, epoch, loss, lr, val_miou?}]
    curves: list[dict[str, Any]] = field(default_factory=list)
    # train_img_s, infer_img_s, latency_ms_p50, latency_ms_p95, peak_mem_mb, params_m, gflops, ppm_gflops,
    # mfu, plus the protocol: batch, image_size, dtype, channels_last, compile, device, flop_counter
    throughput: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)  # train_seconds, eval_seconds, bench_seconds
    # git_sha, torch, timm, python, device, cuda, world_size, protocol details (eval mode, bn, batch)
    provenance: dict[str, Any] = field(default_factory=dict)
    # relative paths (from the record's folder) of qualitative prediction PNGs
    artifacts: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    # did training leave the initial plateau (see `training_check`); None: not judged (failed, pruned, old record)
    trained: bool | None = None
    # the rule's numbers: rule, max_ratio, initial_loss, final_loss, ratio
    training_check: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in data]
        if missing:
            raise ValueError(f"run record: missing fields {missing}")
        if data["status"] not in STATUSES:
            raise ValueError(f"run record: status {data['status']!r} is not one of {STATUSES}")
        return cls(**{k: v for k, v in data.items() if k in known})


TRAINED_RULE = "final_loss <= max_ratio x initial_loss"


def training_check(curves: list[dict[str, Any]], initial_loss: float | None, max_ratio: float
                   ) -> tuple[bool | None, dict[str, Any]]:
    """Whether a run trained: its final logged loss is at most `max_ratio` x the loss of its first step.

    The final loss is the last `loss` point of `curves` (the mean over the last log window). A run whose loss
    stays on the plateau it reaches early ends at a larger share of its first loss than one that trains (see
    docs/max_pooling.md). Returns (None, {}) when the check is off (max_ratio 0) or the numbers are missing.
    """
    losses = [c["loss"] for c in curves if "loss" in c]
    if not max_ratio or not losses or not initial_loss or initial_loss <= 0:
        return None, {}
    ratio = losses[-1] / initial_loss
    return ratio <= max_ratio, {"rule": TRAINED_RULE, "max_ratio": max_ratio, "initial_loss": initial_loss,
                                "final_loss": losses[-1], "ratio": ratio}


def pack_counts(counts: np.ndarray) -> dict[str, Any]:
    """An (images x classes) count matrix as compact JSON: zlib-compressed little-endian uint32, base64."""
    a = np.asarray(counts)
    if a.ndim != 2 or (a.size and (a.min() < 0 or a.max() >= 2**32)):
        raise ValueError(f"pack_counts: expected a 2-D array of counts below 2**32, got shape {a.shape}")
    data = zlib.compress(np.ascontiguousarray(a, dtype="<u4").tobytes(), 6)
    return {"shape": [int(a.shape[0]), int(a.shape[1])], "uint32_zlib_b64": base64.b64encode(data).decode()}


def unpack_counts(packed: dict[str, Any]) -> np.ndarray:
    """The (images x classes) int64 matrix that pack_counts stored."""
    try:
        rows, cols = (int(v) for v in packed["shape"])
        raw = zlib.decompress(base64.b64decode(packed["uint32_zlib_b64"]))
        return np.frombuffer(raw, dtype="<u4").reshape(rows, cols).astype(np.int64)
    except (KeyError, TypeError, ValueError, zlib.error) as e:
        raise ValueError(f"per-image counts: unreadable ({e})") from None


def run_id(variant: str, seed: int) -> str:
    return f"{variant}__s{seed}"


def seeds_text(seeds: Sequence[int]) -> str:
    """Seeds as people write them: [0, 1, 2, 3, 4] -> "0-4", [0, 1, 2, 5] -> "0-2, 5", [0, 1] -> "0, 1"."""
    runs: list[list[int]] = []
    for s in sorted(seeds):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def run_dir(out_dir: str | Path, study: str, variant: str, seed: int) -> Path:
    """The one stable folder of a (study, variant, seed) cell."""
    return Path(out_dir) / study / "runs" / run_id(variant, seed)


def write_record(record: RunRecord, folder: str | Path) -> Path:
    path = Path(folder) / RECORD_FILE
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, sort_keys=True, allow_nan=True) + "\n")
    return path


def read_record(path: str | Path) -> RunRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable run record ({e})") from None
    try:
        return RunRecord.from_dict(data)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: {e}") from None


def completed_record(folder: str | Path, config_hash: str) -> RunRecord | None:
    """The folder's record when it completed with this config hash (a finished run is not run again), else None."""
    path = Path(folder) / RECORD_FILE
    try:
        old = read_record(path) if path.exists() else None
    except ValueError:
        return None
    return old if old is not None and old.status == "completed" and old.config_hash == config_hash else None
