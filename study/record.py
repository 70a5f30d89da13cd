"""The run record: one JSON file per run, the contract between the engine and the results/report layers.

This module must not import torch: reports render from copied results on machines without it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("completed", "failed", "pruned", "running")
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
    status: str  # completed | failed | pruned | running
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


def run_id(variant: str, seed: int) -> str:
    return f"{variant}__s{seed}"


def run_dir(out_dir: str | Path, study: str, variant: str, seed: int) -> Path:
    """The one stable folder of a (study, variant, seed) cell."""
    return Path(out_dir) / study / "runs" / run_id(variant, seed)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


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
