"""The throughput protocol: warm-up, synchronised timed iterations, median and spread over repeats.

Measured on synthetic input of `bench.image_size` (pre- and post-processing excluded, whole-image forward):
train images/s (forward + backward + SGD step), inference images/s, latency p50/p95 at batch 1, peak memory,
parameters, FLOPs per image from torch.utils.flop_counter (the pyramid's own share too), the achieved FLOP/s as a
share of the machine's own peak measured in the same process (study/throughput/peak.py), and MFU against the datasheet peak
of known GPUs. Precision and memory format are the ones `study.device.resolve` gives the config on this device.
"""

from __future__ import annotations

import copy
import resource
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from study.config import Config
from study.device import resolve, widest_conv
from study.throughput.peak import best_of, measure_peak, nominal_peak, sync
from study.train.losses import segmentation_loss


def _timed(fn, iters: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return time.perf_counter() - t0


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(forward FLOPs of the whole model, of its pyramid module) for input x, by torch.utils.flop_counter."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    per_module = counter.get_flop_counts()
    total = float(counter.get_total_flops())
    ppm = sum(float(v) for name, counts in per_module.items() if name.split(".")[-1] == "ppm"
              for v in counts.values())
    return total, ppm


def benchmark(model: torch.nn.Module, cfg: Config, device: torch.device, num_classes: int) -> dict[str, Any]:
    """Run the protocol on a copy of `model` (its weights are not touched)."""
    bc, tc = cfg.bench, cfg.train
    model = copy.deepcopy(model).to(device)
    speed = resolve(device, tc, widest_conv(model))
    memory_format = speed.memory_format
    model = model.to(memory_format=memory_format)
    h, w = bc.image_size
    g = torch.Generator(device="cpu").manual_seed(0)
    # BatchNorm in training mode needs two values per channel and a 1x1 pyramid bin holds one per image: a
    # training step is timed on at least 2 images (the record says how many), inference on bench.batch_size
    train_batch = max(bc.batch_size, 2)
    xt = torch.randn(train_batch, 3, h, w, generator=g).to(device).contiguous(memory_format=memory_format)
    y = torch.randint(0, num_classes, (train_batch, h, w), generator=g).to(device)
    x = xt[:bc.batch_size].contiguous(memory_format=memory_format)
    x1 = x[:1].contiguous(memory_format=memory_format)
    half = bc.peak_seconds / 2
    peak_before = measure_peak(device, speed.dtype, memory_format, half) if half else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    train_rates, infer_rates, latencies = _time(model, cfg, device, speed, (xt, y), x, x1)

    peak_mb, memory_kind = _peak_memory(device, rss_before)
    flops, ppm_flops = count_flops(model, x1)
    train_img_s, infer_img_s = statistics.median(train_rates), statistics.median(infer_rates)
    train_gflop_s = 3 * flops * train_img_s / 1e9  # forward + backward ~ 3x forward
    infer_gflop_s = flops * infer_img_s / 1e9
    peak = best_of(peak_before, measure_peak(device, speed.dtype, memory_format, half)) if half else None
    nominal, nominal_kind = nominal_peak(device, speed.dtype)
    return {
        "train_img_s": train_img_s,
        "train_img_s_min": min(train_rates),
        "train_img_s_max": max(train_rates),
        "infer_img_s": infer_img_s,
        "infer_img_s_min": min(infer_rates),
        "infer_img_s_max": max(infer_rates),
        "latency_ms_p50": _percentile(latencies, 50),
        "latency_ms_p95": _percentile(latencies, 95),
        "peak_mem_mb": peak_mb,
        "memory_kind": memory_kind,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": flops / 1e9,
        "ppm_gflops": ppm_flops / 1e9,
        "train_gflop_s": train_gflop_s,
        "infer_gflop_s": infer_gflop_s,
        "peak": peak,
        "utilisation_train": train_gflop_s / peak["peak_gflop_s"] if peak else None,
        "utilisation_infer": infer_gflop_s / peak["peak_gflop_s"] if peak else None,
        "mfu": train_gflop_s / (nominal * 1e3) if nominal else None,
        "mfu_infer": infer_gflop_s / (nominal * 1e3) if nominal else None,
        "mfu_peak": nominal_kind,
        **_protocol(cfg, device, speed, train_batch),
    }


def _time(model: torch.nn.Module, cfg: Config, device: torch.device, speed: Any,
          train_batch: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, x1: torch.Tensor
          ) -> tuple[list[float], list[float], list[float]]:
    """(train images/s per repeat, inference images/s per repeat, sorted single-image latencies in ms)."""
    bc, tc = cfg.bench, cfg.train
    runner = torch.compile(model) if tc.compile else model
    autocast = speed.autocast(device)
    xt, y = train_batch
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def train_step() -> None:
        with autocast:
            out = runner(xt)
        loss = segmentation_loss(out, y, cfg.model.aux_weight, cfg.data.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer(batch: torch.Tensor):
        def step() -> None:
            with torch.no_grad(), autocast:
                runner(batch)
        return step

    model.train()
    for _ in range(bc.warmup):
        train_step()
    train_rates = [len(xt) * bc.iters / _timed(train_step, bc.iters, device) for _ in range(bc.repeats)]
    model.eval()
    for _ in range(bc.warmup):
        infer(x)()
    infer_rates = [bc.batch_size * bc.iters / _timed(infer(x), bc.iters, device) for _ in range(bc.repeats)]
    one = infer(x1)
    one()
    latencies = sorted(1000 * _timed(one, 1, device) for _ in range(bc.latency_iters))
    return train_rates, infer_rates, latencies


def _peak_memory(device: torch.device, rss_before: int) -> tuple[float, str]:
    """(peak memory in MiB, what was read): the GPU's allocator peak, or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_before) / 1024, "process peak RSS (ru_maxrss)"


def _protocol(cfg: Config, device: torch.device, speed: Any, train_batch: int) -> dict[str, Any]:
    """The record's description of what was measured, and how."""
    bc, tc = cfg.bench, cfg.train
    h, w = bc.image_size
    return {
        "flop_counter": "torch.utils.flop_counter (convolutions and matmuls; pooling, BN and interpolation "
                        "not counted)",
        "batch_size": bc.batch_size,
        "train_batch_size": train_batch,
        "image_size": list(bc.image_size),
        "dtype": speed.dtype,
        "channels_last": speed.channels_last,
        "settings": speed.as_dict(),
        "compile": tc.compile,
        "device": str(device),
        "protocol": f"synthetic input {h}x{w}, whole-image forward, {bc.warmup} warm-up, {bc.repeats} x "
                    f"{bc.iters} timed iterations (median), latency over {bc.latency_iters} single images; "
                    "data loading and pre/post-processing excluded",
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
