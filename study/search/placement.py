"""Where a study's local workers run: which GPUs each one owns (CUDA_VISIBLE_DEVICES), how many CPU threads.

A pure plan (`plan_workers`) from the GPUs asked for, cells per GPU, GPUs per cell and the machine's cores, so that
it is testable without GPUs; `local_plan` applies it to this machine (the sweep command and each SLURM job's node
alike), and `gpu_count` is the only part that asks torch about the machine.

- No GPUs: `workers` CPU workers, the cores split among them (the embedded default).
- GPUs: one worker per GPU (Optuna's one-process-per-GPU pattern), or K per GPU (`--workers-per-gpu K`: a small
  cell uses a sliver of a large GPU), each pinned with CUDA_VISIBLE_DEVICES so that its cuda:0 is its own GPU.
- `--workers N` with GPUs: N workers dealt round-robin over the GPUs (8 on 8 GPUs: one each, never all on 0).
- G GPUs per cell (`--gpus-per-cell G`): each worker owns G GPUs and runs every cell it claims as a torchrun job
  of G processes (DDP, global batch split across ranks). Without GPUs the same runs G gloo processes on CPU.
"""

from __future__ import annotations

import os
from argparse import Namespace
from dataclasses import dataclass


class PlacementError(ValueError):
    """The placement asked for cannot be built on this machine."""


@dataclass(frozen=True)
class Slot:
    """One local worker: the GPUs it owns (physical ids, empty on CPU), threads per process, processes per cell."""

    index: int
    gpus: tuple[int, ...]
    threads: int
    procs: int = 1  # processes per cell: 1 runs run_one in the worker, >1 a torchrun job

    @property
    def device(self) -> str:
        return ",".join(map(str, self.gpus)) if self.gpus else "cpu"

    def env(self) -> dict[str, str]:
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        # "" hides every GPU: a CPU worker on a GPU machine must not pick cuda:0 behind the plan's back
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        return env

    def label(self) -> str:
        where = f"GPU {self.device}" if self.gpus else "cpu"
        t = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        per_cell = f", {self.procs} processes per cell" if self.procs > 1 else ""
        return f"worker {self.index} ({where}, {t}{per_cell})"


def parse_gpus(text: str | None) -> list[int] | None:
    """`--gpus`: None (default: every visible GPU), "cpu"/"none"/"" (no GPU) -> [], "0,1,3" -> [0, 1, 3]."""
    if text is None:
        return None
    if text.strip().lower() in ("", "cpu", "none"):
        return []
    try:
        ids = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise PlacementError(f"--gpus: expected comma-separated GPU indices or 'cpu', got {text!r}") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise PlacementError(f"--gpus: indices must be distinct and >= 0, got {text!r}")
    return ids


def plan_workers(gpus: list[int] | None, workers_per_gpu: int = 1, workers: int | None = None,
                 gpus_per_cell: int = 1, cpu_count: int = 1) -> list[Slot]:
    """The local workers of a study on this machine (pure: no torch, no environment)."""
    if workers_per_gpu < 1 or gpus_per_cell < 1 or (workers is not None and workers < 1):
        raise PlacementError("--workers, --workers-per-gpu and --gpus-per-cell must be >= 1")
    cpu_count = max(1, cpu_count)
    if not gpus:
        n = workers or 1
        if workers_per_gpu > 1:
            raise PlacementError("--workers-per-gpu needs GPUs; on CPU use --workers N")
        threads = max(1, cpu_count // (n * gpus_per_cell))
        return [Slot(i, (), threads, gpus_per_cell) for i in range(n)]
    if workers is not None and workers_per_gpu > 1:
        raise PlacementError("give --workers N (spread over the GPUs) or --workers-per-gpu K, not both")
    if len(gpus) % gpus_per_cell:
        raise PlacementError(f"--gpus-per-cell {gpus_per_cell} does not divide the {len(gpus)} GPU(s) "
                             f"{','.join(map(str, gpus))}")
    groups = [tuple(gpus[i:i + gpus_per_cell]) for i in range(0, len(gpus), gpus_per_cell)]
    n = workers if workers is not None else len(groups) * workers_per_gpu  # --workers N: round-robin on GPUs
    threads = max(1, cpu_count // (n * gpus_per_cell))
    # round-robin over GPU groups so that worker i and i+1 sit on different GPUs
    return [Slot(i, groups[i % len(groups)], threads, gpus_per_cell) for i in range(n)]


def physical_ids(ids: list[int], visible: str | None) -> list[int]:
    """Map indices among this process's visible GPUs to the ids a child's CUDA_VISIBLE_DEVICES must name."""
    if visible is None or not visible.strip():
        return ids
    parent = [s.strip() for s in visible.split(",") if s.strip()]
    if not all(s.isdigit() for s in parent):  # GPU UUIDs: children inherit the parent's order by index
        return ids
    return [int(parent[i]) if i < len(parent) else i for i in ids]


def gpu_count() -> int:
    """How many GPUs this process sees (0 without CUDA); imports torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a SLURM job's share, `taskset`), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def local_plan(args: Namespace, check: bool = True) -> tuple[list[Slot], int]:
    """The workers of this machine (the sweep command, or one SLURM job on its node) and how many GPUs it has.

    `--gpus` (default: every visible GPU; checked against the machine unless `check` is off, as for --dry-run),
    `--workers-per-gpu`, `--workers`, `--gpus-per-cell`, and the cores this process may use."""
    asked = parse_gpus(args.gpus)
    count = gpu_count()
    if asked is None:
        asked = list(range(count))
    elif check:
        check_gpus(asked, count)
    ids = physical_ids(asked, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return plan_workers(ids, args.workers_per_gpu, args.workers, args.gpus_per_cell, usable_cores()), count


def check_gpus(ids: list[int], count: int) -> None:
    """Refuse GPU indices the machine does not have (one line)."""
    missing = [i for i in ids if i >= count]
    if missing:
        have = f"GPUs 0-{count - 1}" if count else "no GPU"
        raise PlacementError(f"--gpus {','.join(map(str, ids))}: this machine has {have} "
                             f"(no GPU {','.join(map(str, missing))})")


def describe(slots: list[Slot]) -> list[str]:
    """One line per worker: `worker 0: CUDA_VISIBLE_DEVICES=1 OMP_NUM_THREADS=4` (or cpu)."""
    lines = []
    for s in slots:
        where = f"CUDA_VISIBLE_DEVICES={s.device}" if s.gpus else "cpu"
        extra = f" torchrun --nproc_per_node {s.procs}" if s.procs > 1 else ""
        lines.append(f"  worker {s.index}: {where} threads={s.threads}{extra}")
    return lines
