"""Local worker processes of a study: what each one runs (WorkerSpec) and starting it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerSpec:
    """One local worker process: a label for messages, its command line and the environment it adds."""

    label: str  # e.g. "worker 0 (cpu, 1 thread)" or "worker 3 (GPU 1)"
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS)


def start(spec: WorkerSpec) -> subprocess.Popen:
    return subprocess.Popen(list(spec.argv), env={**os.environ, **spec.env})
