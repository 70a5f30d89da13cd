"""Seeding, determinism, device choice and provenance of a run."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda:<local rank> when a GPU is present, else cpu; "cuda" -> cuda:<local rank>.

    The runner pins each worker with CUDA_VISIBLE_DEVICES, so a worker's cuda:0 is its own GPU and a torchrun
    cell's ranks take cuda:0..G-1 of the G GPUs it was given. A local rank without a GPU of its own is an error,
    never a silent second process on GPU 0.
    """
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"run.device: {name} requested but no CUDA device is available")
    device = torch.device(f"cuda:{local_rank}") if name in ("auto", "cuda") else torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ValueError(f"run.device: {device} (local rank {local_rank}) but this process sees {count} GPU(s)"
                         + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""))
    return device


def bf16_supported(device: torch.device) -> bool:
    """torch can run bf16 here: CUDA GPUs with bf16; CPUs where oneDNN has bf16 kernels (AVX-512 or newer, some
    of them emulated: study/device.py decides whether bf16 pays)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def git_sha(cwd: str | Path = ".") -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The host CPU's model name (Linux /proc/cpuinfo, else the platform's word for it); "" when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance(device: torch.device) -> dict:
    """Versions and hardware; no host name."""
    import timm

    return {
        "git_sha": git_sha(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": device_name(device),
        "cpu": cpu_model(),
    }
