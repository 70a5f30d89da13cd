"""Ours against the official PSPNet50 (hszhao/semseg `model/pspnet.py`), timed side by side in one process.

`python -m study.throughput.official CONFIG [overrides] --semseg DIR [--rounds 5] [--batch 2] [--size 233]
[--same-settings]`, e.g. `python -m study.throughput.official configs/base.yaml run.threads=1 --semseg ../semseg`

DIR is a local clone of hszhao/semseg (nothing is downloaded; its model is imported from there, `pretrained=False`,
150 classes, zoom factor 8, aux head on). Ours is CONFIG's model (configs/base.yaml: the dilated ResNet-50 PSPNet)
with 150 classes. Each model runs a training step (forward, the main loss plus 0.4 x the aux loss,
backward, SGD) and an inference forward on a random batch, in rounds that alternate which model goes first; the
ratios are per round (official seconds / ours: above 1, ours is faster), reported as median and range. Each model
runs in its own default: ours in what `study.device` picks on this device (bf16 autocast and
channels_last where they pay), the official code in fp32 NCHW, as its training script does; `--same-settings`
gives the official model ours' precision and memory format too, so the comparison is of the networks alone.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from study.config import ConfigError
from study.config_files import load_config
from study.device import resolve, widest_conv
from study.models.build import build_model
from study.train.losses import segmentation_loss

CLASSES = 150


def official_model(semseg: Path) -> torch.nn.Module:
    """The official PSPNet50 from a local clone of hszhao/semseg (ValueError naming the folder if it is not one)."""
    if not (semseg / "model" / "pspnet.py").is_file():
        raise ValueError(f"--semseg: {semseg} has no model/pspnet.py (expected a clone of hszhao/semseg)")
    sys.path.insert(0, str(semseg))
    try:
        module = importlib.import_module("model.pspnet")
    finally:
        sys.path.remove(str(semseg))
    return module.PSPNet(layers=50, bins=(1, 2, 3, 6), dropout=0.1, classes=CLASSES, zoom_factor=8, use_ppm=True,
                         pretrained=False)


def _seconds(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def compare(ours: torch.nn.Module, official: torch.nn.Module, *, speed, same_settings: bool, batch: int, size: int,
            rounds: int, steps: int = 2) -> dict[str, Any]:
    """Per round, seconds of a training step and of an inference forward for each model; the median ratios."""
    device = torch.device("cpu")
    ours_fmt, ours_cast = speed.memory_format, speed.autocast(device)
    off_fmt = ours_fmt if same_settings else torch.contiguous_format
    off_cast = ours_cast if same_settings else nullcontext()
    ours.to(memory_format=ours_fmt)
    official.to(memory_format=off_fmt)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, CLASSES, (batch, size, size))
    opts = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
            for name, m in (("ours", ours), ("official", official))}

    def train_ours() -> None:
        ours.train()
        with ours_cast:
            out = ours(x.contiguous(memory_format=ours_fmt))
        loss = segmentation_loss(out, y, 0.4)
        opts["ours"].zero_grad(set_to_none=True)
        loss.backward()
        opts["ours"].step()

    def train_official() -> None:
        official.train()
        with off_cast:
            _, main, aux = official(x.contiguous(memory_format=off_fmt), y)
        loss = main.float() + 0.4 * aux.float()
        opts["official"].zero_grad(set_to_none=True)
        loss.backward()
        opts["official"].step()

    @torch.no_grad()
    def infer_ours() -> None:
        ours.eval()
        with ours_cast:
            ours(x.contiguous(memory_format=ours_fmt))

    @torch.no_grad()
    def infer_official() -> None:
        official.eval()
        with off_cast:
            official(x.contiguous(memory_format=off_fmt))

    for fn in (train_ours, train_official, infer_ours, infer_official):
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ("train_ours", "train_official", "infer_ours", "infer_official")}
    for r in range(rounds):
        order = [("ours", "official"), ("official", "ours")][r % 2]
        for who in order:
            times[f"train_{who}"].append(_seconds(train_ours if who == "ours" else train_official, steps))
        for who in order:
            times[f"infer_{who}"].append(_seconds(infer_ours if who == "ours" else infer_official, steps))
    out: dict[str, Any] = {"times": times, "rounds": rounds, "batch": batch, "size": size}
    for kind in ("train", "infer"):
        ratios = [o / u for o, u in zip(times[f"{kind}_official"], times[f"{kind}_ours"], strict=True)]
        out[f"{kind}_ratio"] = statistics.median(ratios)
        out[f"{kind}_range"] = (min(ratios), max(ratios))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.throughput.official", description=__doc__.splitlines()[0])
    p.add_argument("config", help="ours: a run config, e.g. configs/base.yaml (the dilated ResNet-50 PSPNet)")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--semseg", required=True, help="a local clone of hszhao/semseg")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="steps timed per round, model and kind")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=233, help="square input; (size - 1) divisible by 8, as the official "
                                                         "model requires")
    p.add_argument("--same-settings", action="store_true", help="the official model in ours' precision and layout")
    args = p.parse_args(argv)
    if (args.size - 1) % 8 or args.rounds < 1 or args.batch < 1:
        print("error: --size - 1 must be divisible by 8; --rounds and --batch at least 1", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
        official = official_model(Path(args.semseg))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    torch.manual_seed(0)
    ours = build_model(cfg.model, CLASSES)
    speed = resolve(torch.device("cpu"), cfg.train, widest_conv(ours))
    result = compare(ours, official, speed=speed, same_settings=args.same_settings, batch=args.batch,
                     size=args.size, rounds=args.rounds, steps=args.steps)
    theirs = speed.label() if args.same_settings else "fp32 NCHW"
    print(f"ours ({speed.label()}, {speed.hardware}) against the official PSPNet50 ({theirs}), batch {args.batch}, "
          f"{args.size}x{args.size}, {torch.get_num_threads()} thread(s), {args.rounds} rounds:")
    for kind in ("train", "infer"):
        lo, hi = result[f"{kind}_range"]
        ours_s = statistics.median(result["times"][f"{kind}_ours"])
        off_s = statistics.median(result["times"][f"{kind}_official"])
        print(f"  {'training step' if kind == 'train' else 'inference'}: ours {ours_s:.3f} s, official {off_s:.3f} s:"
              f" ours {result[f'{kind}_ratio']:.2f}x as fast ({lo:.2f}-{hi:.2f} over rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
