"""Compute peaks: the machine's own, measured in the benchmark's process, and the datasheet's for known GPUs.

A model's achieved FLOP/s over the measured peak is its utilisation (as model-FLOPs utilisation on GPUs): the peak
is the faster of a large matrix product and a ResNet-like 3x3 convolution, each timed for a fraction of a second
in the dtype and memory format the model ran in, with the same threads, before and after the model is timed.
"""

from __future__ import annotations

import time

import torch

# Dense tensor-core peaks from NVIDIA's datasheets, TFLOP/s, by (a part of) the device name; checked in this order.
NOMINAL_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bfloat16": 756.0, "tf32": 378.0, "float32": 51.2},
    "H100": {"bfloat16": 989.4, "tf32": 494.7, "float32": 66.9},
    "H200": {"bfloat16": 989.4, "tf32": 494.7, "float32": 66.9},
    "A100": {"bfloat16": 312.0, "tf32": 156.0, "float32": 19.5},
    "L40S": {"bfloat16": 362.1, "tf32": 183.0, "float32": 91.6},
    "A10": {"bfloat16": 125.0, "tf32": 62.5, "float32": 31.2},
    "RTX 4090": {"bfloat16": 165.2, "tf32": 82.6, "float32": 82.6},
}


def lookup(name: str, kind: str) -> tuple[float | None, str]:
    """(datasheet TFLOP/s, what it is) for GPU `name` in `kind` (bfloat16, tf32, float32); (None, why) if unknown."""
    for key, peaks in NOMINAL_TFLOPS.items():
        if key in name:
            return peaks[kind], f"{name}: dense {kind} datasheet peak"
    return None, f"{name}: peak unknown (not in study/throughput/peak.py's table)"


def nominal_peak(device: torch.device, dtype: str) -> tuple[float | None, str]:
    """`lookup` for this device; fp32 convolutions run on TF32 tensor cores when cuDNN allows it (torch's
    default), so fp32 is set against the TF32 peak then."""
    if device.type != "cuda":
        return None, "no datasheet peak for CPUs (see the measured peak)"
    tf32 = dtype == "float32" and torch.backends.cudnn.allow_tf32
    return lookup(torch.cuda.get_device_name(device), "tf32" if tf32 else dtype)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPUs): every timing here starts and ends with it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step, flops: float, device: torch.device, seconds: float) -> float:
    """GFLOP/s of `step` (which does `flops`), over as many calls as fit in `seconds` after one warm-up call."""
    step()
    sync(device)
    calls, t0 = 0, time.perf_counter()
    while True:
        for _ in range(4 if device.type == "cuda" else 1):
            step()
            calls += 1
        sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return flops * calls / elapsed / 1e9


def best_of(*peaks: dict) -> dict:
    """The faster of several measurements of the same kernels (taken before and after a model was timed, so
    that a load that came and went on a shared machine does not make the model look faster than the peak)."""
    out = dict(peaks[0])
    for key in ("matmul_gflop_s", "conv3x3_gflop_s"):
        out[key] = max(p[key] for p in peaks)
    out["peak_gflop_s"] = max(out["matmul_gflop_s"], out["conv3x3_gflop_s"])
    out["measurements"] = len(peaks)
    return out


def measure_peak(device: torch.device, dtype: str, memory_format: torch.memory_format = torch.contiguous_format,
                 seconds: float = 0.4) -> dict:
    """GFLOP/s of a square matmul and of a 3x3 convolution in `dtype` ("float32" or "bfloat16") on `device`."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else 1024
    batch, ch, hw = (32, 256, 56) if cuda else (8, 128, 28)
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, torch_dtype)
    b = torch.randn(n, n, generator=g).to(device, torch_dtype)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(device).to(memory_format=memory_format)
    x = torch.randn(batch, ch, hw, hw, generator=g).to(device).contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def conv_step() -> None:
        with torch.no_grad(), autocast:
            conv(x)

    matmul = _rate(lambda: torch.mm(a, b), 2.0 * n**3, device, seconds)
    conv3 = _rate(conv_step, 2.0 * batch * ch * ch * 9 * hw * hw, device, seconds)
    return {"dtype": dtype, "matmul_gflop_s": matmul, "conv3x3_gflop_s": conv3, "peak_gflop_s": max(matmul, conv3),
            "threads": torch.get_num_threads(), "memory_format": "channels_last"
            if memory_format == torch.channels_last else "NCHW",
            "kernels": f"matmul {n}x{n}x{n}; conv 3x3 {ch}->{ch} on {batch}x{ch}x{hw}x{hw}, each timed "
                       f"{seconds:g} s after a warm-up"}
