"""Which precision and memory format a run uses on the device at hand, and why.

`train.amp` and `train.channels_last` say what a config would like; `resolve` keeps each only where it measured
faster (docs/speed.md):
- CUDA: bf16 autocast where the GPU has bf16; channels_last as asked (cuDNN's NHWC kernels).
- CPUs with native bf16 (flag amx_bf16 or avx512_bf16 in /proc/cpuinfo): bf16 autocast; channels_last with bf16
  on AMX (measured 2.5x fp32 NCHW for ResNet-50 PSPNet); with bf16 without AMX (AVX-512 BF16, e.g. Zen 4)
  channels_last for narrow models as in fp32 (the probe trained 1.27x faster than in NCHW there), NCHW for wide
  ones (not measured).
- Other CPUs (AVX2, AVX-512 without bf16): fp32 (bf16 would be emulated). In fp32 on any CPU the layout depends
  on the model's width: channels_last for narrow models (widest convolution <= NARROW channels: the
  probe, camvid_small), NCHW for wider ones (camvid's 256, ResNet-50's 2048), where channels_last trained slower
  at two threads on an AVX2 EPYC (docs/speed.md).
`train.force_settings: true` takes both switches as set (bf16 still needs torch's own bf16 check), as before the
resolution existed. The choice and its reason go into the run record's provenance and every benchmark row.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from study.config import TrainConfig
from study.env import bf16_supported

NATIVE_BF16 = ("amx_bf16", "avx512_bf16")
NARROW = 128  # CPUs without AMX: channels_last for models whose widest convolution has at most this many channels


@dataclass(frozen=True)
class Speed:
    """The effective settings of a run on one device and the one-line reason for them."""

    dtype: str  # "bfloat16" | "float32"
    channels_last: bool
    hardware: str  # e.g. "cuda (NVIDIA H200)", "cpu (amx_bf16)", "cpu (avx2, no native bf16)"
    why: str
    forced: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """bf16 autocast on `device` when the resolved dtype is bf16; a no-op otherwise."""
        if self.dtype == "bfloat16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return nullcontext()

    def label(self) -> str:
        return f"{'bf16' if self.dtype == 'bfloat16' else 'fp32'} {'channels_last' if self.channels_last else 'NCHW'}"

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The first processor's feature flags from /proc/cpuinfo; None where the file cannot be read (not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / Arm
            return frozenset(value.split())
    return None


def cpu_kind(flags: frozenset[str] | None) -> str:
    """The CPU's class for these choices: amx_bf16, avx512_bf16, avx512, avx2, other or unknown."""
    if flags is None:
        return "unknown"
    for name in ("amx_bf16", "avx512_bf16"):
        if name in flags:
            return name
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def widest_conv(model: torch.nn.Module) -> int | None:
    """The most output channels of any convolution in `model` (None without convolutions)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return max(widths) if widths else None


def resolve(device: torch.device, tc: TrainConfig, widest: int | None = None,
            flags: frozenset[str] | None | str = "read", torch_bf16: bool | None = None) -> Speed:
    """The settings `tc` gets on `device` for a model whose widest convolution has `widest` output channels
    (`widest_conv`; None: unknown). CPU flags and torch's bf16 support are read from the machine unless given."""
    bf16_ok = bf16_supported(device) if torch_bf16 is None else torch_bf16
    if device.type == "cuda":
        dtype = "bfloat16" if tc.amp and bf16_ok else "float32"
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "GPU"
        why = ("bf16 autocast" if dtype == "bfloat16" else "fp32 (" + ("train.amp off" if not tc.amp else
                                                                        "this GPU has no bf16") + ")")
        why += ", channels_last (cuDNN NHWC kernels)" if tc.channels_last else ", NCHW (train.channels_last off)"
        return Speed(dtype, tc.channels_last, f"cuda ({name})", why, tc.force_settings)
    if device.type != "cpu":
        return Speed("float32", tc.channels_last, device.type, "no rule for this device: settings as set",
                     tc.force_settings)
    flags = cpu_flags() if isinstance(flags, str) else flags
    kind = cpu_kind(flags)
    native = kind in NATIVE_BF16
    hardware = f"cpu ({kind}{'' if native or kind == 'unknown' else ', no native bf16'})"
    if tc.force_settings:
        dtype = "bfloat16" if tc.amp and bf16_ok else "float32"
        return Speed(dtype, tc.channels_last, hardware, "train.force_settings: train.amp and "
                     "train.channels_last as set", True)
    if not tc.amp:
        dtype, why = "float32", "fp32 (train.amp off)"
    elif kind == "unknown":  # no flags to read: trust torch's own check, as before
        dtype = "bfloat16" if bf16_ok else "float32"
        why = f"{'bf16' if bf16_ok else 'fp32'} (CPU flags unreadable: torch's bf16 check)"
    elif native and bf16_ok:
        dtype, why = "bfloat16", f"bf16 autocast ({kind})"
    else:
        dtype, why = "float32", "fp32 (no amx_bf16 / avx512_bf16: bf16 would be emulated)"
    if not tc.channels_last:
        layout, cl_why = False, "NCHW (train.channels_last off)"
    elif dtype == "bfloat16" and kind == "amx_bf16":
        layout, cl_why = True, "channels_last (pays with bf16 on AMX)"
    elif dtype == "float32" and widest is not None and widest <= NARROW:
        layout, cl_why = True, f"channels_last (fp32, narrow model: widest conv {widest} <= {NARROW} channels)"
    elif dtype == "float32":
        width = f"widest conv {widest} channels" if widest is not None else "model width unknown"
        layout, cl_why = False, f"NCHW (fp32, {width}: channels_last pays only up to {NARROW})"
    elif widest is not None and widest <= NARROW:
        layout, cl_why = True, f"channels_last (bf16 without AMX, narrow model: widest conv {widest} <= {NARROW} channels)"
    else:
        width = f"widest conv {widest} channels" if widest is not None else "model width unknown"
        layout, cl_why = False, f"NCHW (bf16 without AMX, {width}: channels_last measured to pay only up to {NARROW})"
    return Speed(dtype, layout, hardware, f"{why}, {cl_why}")
