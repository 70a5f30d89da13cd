"""Seeds packed into one network: would training K seeds of a variant at once beat K runs one after another here?

The product trains one run at a time. Packing (K seeds of a variant as one network, one training step for all of
them: study/throughput/packed_step.py, which says exactly what a packed step changes against K separate steps)
stays out of the product until a GPU measurement shows it pays; this command is that measurement. Measured so
far (docs/speed.md): on a 2-core Xeon with AMX-BF16 a packed member's step ran at 0.23-0.57x the speed of one run
alone (medians, K = 2-8, bf16 and fp32; frozen-feature heads 0.29-0.30x); on the one GPU run (an H100) packing
failed, before the NCHW and fp32 batch-norm fixes in packed_step.py, and it has not been measured on a GPU since.

`python -m study.throughput.packing CONFIG [overrides] [--members 2,4,8] [--rounds R] [--device cuda] [--out F]`
(part of `nox -s bench` on the CPU, and of `nox -s gpu_check`)
times training steps of the config's network, K members packed against the same K trained one after another,
interleaved round by round in one process, in the precision and layout a run would use here (the packed step keeps
NCHW), and says whether packing pays: only a median speed-up of a member's step of at least PAYS x counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from study.config import Config, ConfigError
from study.config_files import load_config
from study.device import resolve, widest_conv
from study.features.head import FrozenFeatureHead
from study.models.build import build_model
from study.throughput.bench import count_flops
from study.throughput.packed_step import Packed, packed_step
from study.throughput.peak import best_of, measure_peak

PAYS = 1.1  # packing counts as paying from this median speed-up of a member's step on


def members(cfg: Config, k: int, num_classes: int) -> list[torch.nn.Module]:
    """K copies of what the config trains, member i initialised from seed i (as run i would be): the network, or
    with model.freeze_backbone its pyramid and heads on stored maps (study.features.head)."""
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = build_model(cfg.model, num_classes)
        out.append((FrozenFeatureHead(model, cfg.model.output_stride) if cfg.model.freeze_backbone else model).train())
    return out


def inputs(cfg: Config, model: torch.nn.Module, k: int, num_classes: int, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs (K, N, C, h, w) of a training batch and its labels (K, N, H, W): images at the crop size, or
    stored maps (frozen features) at data.feature_crop cells with labels at output stride x that."""
    n = cfg.train.batch_size
    if isinstance(model, FrozenFeatureHead):
        stride = cfg.model.output_stride
        h, w = cfg.data.feature_crop or (cfg.data.crop_size[0] // stride, cfg.data.crop_size[1] // stride)
        x = torch.randn(k, n, sum(model.splits), h, w, device=device)
        return x, torch.randint(0, num_classes, (k, n, h * stride, w * stride), device=device)
    h, w = cfg.data.crop_size
    return torch.randn(k, n, 3, h, w, device=device), torch.randint(0, num_classes, (k, n, h, w), device=device)


def _time(fn, steps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - start) / steps


def measure(cfg: Config, ks: list[int], *, rounds: int = 3, steps: int = 4, num_classes: int = 4,
            device: torch.device | None = None) -> list[dict[str, Any]]:
    """Per K: seconds per member-step, K separate models stepped one after another vs packed, interleaved over
    `rounds`; the median ratio (separate / packed: above 1, packing is faster) and its range; each side's training
    FLOP/s (3 x a member's forward FLOPs a step) and its share of the machine's peak measured in the same process
    (study.throughput.peak, before and after, the faster)."""
    device = device or torch.device("cpu")
    return [_measure_one(cfg, k, rounds, steps, num_classes, device) for k in ks]


def _measure_one(cfg: Config, k: int, rounds: int, steps: int, num_classes: int, device: torch.device
                 ) -> dict[str, Any]:
    lr, momentum, decay = cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay
    models = [m.to(device) for m in members(cfg, k, num_classes)]
    speed = resolve(device, cfg.train, widest_conv(models[0]))
    layout, autocast = speed.memory_format, speed.autocast(device)
    for m in models:
        m.to(memory_format=layout)
    opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum, weight_decay=decay) for m in models]
    packed = Packed([m.to(device) for m in members(cfg, k, num_classes)])
    popt = torch.optim.SGD(list(packed.params.values()), lr=lr, momentum=momentum, weight_decay=decay)
    images, targets = inputs(cfg, models[0], k, num_classes, device)
    batches = [images[i].contiguous(memory_format=layout) for i in range(k)]

    def separate():
        for i, (m, o) in enumerate(zip(models, opts, strict=True)):
            with autocast:
                out = m(batches[i])["out"]
            loss = F.cross_entropy(out.float(), targets[i])
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()

    def together():
        packed_step(packed, popt, images, targets, autocast)

    separate(), together()  # warm-up
    peak_before = measure_peak(device, speed.dtype, layout)
    sep, pack = [], []
    for _ in range(rounds):
        sep.append(_time(separate, steps, device) / k)
        pack.append(_time(together, steps, device) / k)
    ratios = [a / b for a, b in zip(sep, pack, strict=True)]
    flops = 3 * count_flops(models[0], batches[0])[0]  # a member's training step: forward + backward
    peak = best_of(peak_before, measure_peak(device, speed.dtype, layout))
    rows = {"members": k, "separate_ms": 1000 * statistics.median(sep), "packed_ms": 1000 * statistics.median(pack),
            "ratio": statistics.median(ratios), "ratio_low": min(ratios), "ratio_high": max(ratios),
            "settings": speed.label(), "hardware": speed.hardware,
            "step_gflop": flops / 1e9, "peak_gflop_s": peak["peak_gflop_s"]}
    for side, seconds in (("separate", statistics.median(sep)), ("packed", statistics.median(pack))):
        rows[f"{side}_gflop_s"] = flops / seconds / 1e9
        rows[f"{side}_share"] = rows[f"{side}_gflop_s"] / peak["peak_gflop_s"]
    return rows


def verdict(rows: list[dict[str, Any]]) -> tuple[int, str]:
    """(K, why): the K with the best median speed-up of a member's step where it reaches PAYS, else 1 (packing does
    not pay here, and the product's one run at a time stands)."""
    best = max(rows, key=lambda r: r["ratio"], default=None)
    if best is None or best["ratio"] < PAYS:
        top = f"best {best['ratio']:.2f}x at K={best['members']}" if best else "nothing measured"
        return 1, f"packing does not pay here ({top}; it counts from {PAYS}x): train seeds one by one"
    return best["members"], (f"packing pays here: {best['ratio']:.2f}x a member's step at K={best['members']} "
                             f"(the product still trains one run at a time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.throughput.packing", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--members", default="2,4", help="pack sizes K to time (default 2,4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="steps timed per round and side")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", help="also write the rows and the verdict (members: K where packing pays, else 1; why) as JSON")
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        print(f"error: --device: {args.device!r} is not cpu or an available cuda", file=sys.stderr)
        return 2
    try:
        ks = [int(k) for k in args.members.split(",")]
        if not ks or min(ks) < 2:
            raise ValueError
    except ValueError:
        print("error: --members: comma-separated pack sizes of at least 2", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    rows = measure(cfg, ks, rounds=args.rounds, steps=args.steps, device=torch.device(args.device))
    print(f"packing on {rows[0]['hardware']}, {rows[0]['settings']} for separate runs, threads "
          f"{torch.get_num_threads()}:")
    for r in rows:
        print(f"  K={r['members']}: separate {r['separate_ms']:.1f} ms, packed {r['packed_ms']:.1f} ms a member's "
              f"step: {r['ratio']:.2f}x ({r['ratio_low']:.2f}-{r['ratio_high']:.2f} over {args.rounds} rounds); "
              f"{100 * r['separate_share']:.0f}% and {100 * r['packed_share']:.0f}% of the measured peak "
              f"({r['peak_gflop_s']:.0f} GFLOP/s)")
    k, why = verdict(rows)
    print("verdict: " + why)
    if args.out:
        from study.atomic import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps({"rows": rows, "members": k, "why": why}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
