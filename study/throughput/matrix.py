"""`python -m study.throughput.matrix CONFIG [overrides]`: fp32, bf16, channels_last and torch.compile side by side.

Every setting is timed by the throughput protocol (study/throughput/bench.py) on the same model and input, each in a fresh
process (so peak memory is its own and one setting's allocator state does not help the next). On a shared machine
use `--rounds R`: the settings are measured R times, interleaved (the order rotates each round), each ratio is
taken within a round (against that round's fp32) and the table gives the medians over rounds. The table gives
train and inference images/s and their ratio to fp32; the JSON keeps every measurement. torch.compile gets
`--compile-timeout` seconds (default 120) and is reported as skipped, with the reason, when it fails or takes
longer. Every row forces its setting (`train.force_settings=true`); a bf16 row is skipped where torch has no
bf16 on the device (it would repeat an fp32 row). Before the table it prints what the config gets by default on
this machine (study/device.py) and why; after it, which row that is and how it compares with the fastest. Each row
also gives the achieved training FLOP/s as a share of the machine's own peak, measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# name -> (train.amp, train.channels_last, train.compile); None: the config's own, resolved for this machine
SETTINGS: dict[str, tuple[bool | None, bool | None, bool]] = {
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "fp32+channels_last": (False, True, False),
    "bf16+channels_last": (True, True, False),
    "default+compile": (None, None, True),
}


def setting_overrides(name: str) -> list[str]:
    """The dotted overrides of a row: its switches, forced; `default+compile` adds only the compile."""
    amp, cl, comp = SETTINGS[name]
    if amp is None:
        return [f"train.compile={str(comp).lower()}"]
    return [f"train.amp={str(amp).lower()}", f"train.channels_last={str(cl).lower()}",
            f"train.compile={str(comp).lower()}", "train.force_settings=true"]


def auto_choice(config: str, overrides: list[str]):
    """(what the config gets by default on this machine, whether torch has bf16 on that device)."""
    from study.config_files import load_config
    from study.data.build import class_names
    from study.device import resolve, widest_conv
    from study.env import bf16_supported, pick_device
    from study.models.build import build_model

    cfg = load_config(config, overrides)
    device = pick_device(cfg.run.device)
    widest = widest_conv(build_model(cfg.model, len(class_names(cfg.data))))
    return resolve(device, cfg.train, widest), bf16_supported(device)


def auto_row(results: dict[str, dict[str, Any]], speed) -> str | None:
    """The measured row that matches the default choice (same dtype and layout, no compile)."""
    for name, (_, cl, comp) in SETTINGS.items():
        r = results.get(name, {})
        if "skipped" not in r and r and not comp and cl == speed.channels_last and r["dtype"] == speed.dtype:
            return name
    return None


def verdict(results: dict[str, dict[str, Any]], speed) -> str:
    """One line: which row the default is and how it compares with the fastest row (training)."""
    mine = auto_row(results, speed)
    measured = {n: r for n, r in results.items() if "skipped" not in r}
    if mine is None or not measured:
        return f"default ({speed.label()}): no matching row was measured"
    best = max(measured, key=lambda n: measured[n]["train_img_s"])
    line = f"default ({speed.label()}) is the row {mine}"
    if best == mine:
        return line + ": the fastest measured row for training"
    ratio = measured[best]["train_img_s"] / measured[mine]["train_img_s"]
    return line + f"; fastest for training: {best}, {ratio:.2f}x the default's img/s"


def measure(config: str, overrides: list[str], name: str, timeout: float | None) -> dict[str, Any]:
    """One setting in its own `python -m study bench` process: its throughput dict, or {"skipped": reason}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "study", "bench", config, *overrides, *setting_overrides(name), "--out", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"skipped": f"took longer than {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
            return {"skipped": f"failed (status {proc.returncode}): {lines[-1][:200]}"}
        return json.loads(out.read_text())["throughput"]


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """train and inference images/s of every setting over fp32's (one round)."""
    base = results.get("fp32", {})
    out = {}
    for name, r in results.items():
        out[name] = {key: (r[key] / base[key] if key in r and base.get(key) else None)
                     for key in ("train_img_s", "infer_img_s")}
    return out


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """Per setting: the round-median measurement (by train img/s) with median img/s and within-round ratios."""
    summary: dict[str, dict[str, Any]] = {}
    rel: dict[str, dict[str, float | None]] = {}
    per_round = [ratios(r) for r in rounds]
    for name in rounds[0]:
        runs = [r[name] for r in rounds if "skipped" not in r[name]]
        if not runs:
            summary[name] = rounds[0][name]
            rel[name] = {"train_img_s": None, "infer_img_s": None}
            continue
        mid = sorted(runs, key=lambda r: r["train_img_s"])[len(runs) // 2]
        summary[name] = {**mid, **{k: statistics.median(r[k] for r in runs) for k in ("train_img_s", "infer_img_s")},
                         "rounds": len(runs)}
        rel[name] = {}
        for key in ("train_img_s", "infer_img_s"):
            values = [pr[name][key] for pr in per_round if pr[name][key] is not None]
            rel[name][key] = statistics.median(values) if values else None
            rel[name][key + "_range"] = [min(values), max(values)] if values else None
    return summary, rel


def table(results: dict[str, dict[str, Any]], rel: dict[str, dict] | None = None) -> str:
    from tabulate import tabulate

    rel = rel or ratios(results)

    def utilisation(r: dict[str, Any]) -> str:
        peak = r.get("peak")
        if not peak or r.get("utilisation_train") is None:
            return "-"
        return f"{100 * r['utilisation_train']:.0f}% of {peak['peak_gflop_s']:.0f}"

    def ratio(name: str, key: str) -> str:
        text = f"{rel[name][key]:.2f}x"
        spread = rel[name].get(key + "_range")
        return text + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread and spread[0] != spread[1] else "")

    rows = []
    for name, r in results.items():
        if "skipped" in r:
            rows.append((name, "-", "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"))
            continue
        rows.append((name, r["dtype"], f"{r['train_img_s']:.3g}", ratio(name, "train_img_s"),
                     f"{r['infer_img_s']:.3g}", ratio(name, "infer_img_s"), utilisation(r),
                     f"{r['latency_ms_p50']:.1f}", f"{r['peak_mem_mb']:.0f} MB"))
    return tabulate(rows, headers=["setting", "dtype", "train img/s", "vs fp32", "infer img/s", "vs fp32",
                                   "train GFLOP/s of peak", "p50 ms (b=1)", "peak mem"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.throughput.matrix", description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--compile-timeout", type=float, default=120.0, help="seconds for the compile setting")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians over them (shared machines)")
    p.add_argument("--out", help="JSON file (default results/bench/matrix_<config stem>.json)")
    args = p.parse_intermixed_args(argv)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        print(f"error: --settings: unknown {unknown}; known: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    if "fp32" not in names:
        names.insert(0, "fp32")  # the reference of every ratio
    try:
        speed, has_bf16 = auto_choice(args.config, list(args.overrides))
    except ValueError as e:  # ConfigError, a device that is not there
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"[bench] {speed.hardware}: by default this config trains in {speed.label()}: {speed.why}", flush=True)
    no_bf16 = {"skipped": "no bf16 on this device (the row would repeat an fp32 row)"}
    rounds: list[dict[str, dict[str, Any]]] = []
    for i in range(max(1, args.rounds)):
        order = names[i % len(names):] + names[:i % len(names)]  # rotate: no setting always runs first
        measured: dict[str, dict[str, Any]] = {}
        for name in order:
            if i and "skipped" in rounds[0][name]:
                measured[name] = rounds[0][name]  # a compile that failed or timed out once is not retried
                continue
            if SETTINGS[name][0] and not has_bf16:
                measured[name] = no_bf16
                continue
            print(f"[bench] round {i + 1}: {name} ...", flush=True)
            timeout = args.compile_timeout if SETTINGS[name][2] else None
            measured[name] = measure(args.config, list(args.overrides), name, timeout)
        rounds.append({name: measured[name] for name in names})
    results, rel = summarize(rounds)
    print(table(results, rel))
    print(f"[bench] {verdict(results, speed)}")
    from study.atomic import atomic_write_text

    out = Path(args.out) if args.out else Path("results") / "bench" / f"matrix_{Path(args.config).stem}.json"
    atomic_write_text(out, json.dumps({"config": args.config, "overrides": args.overrides,
                                       "threads": os.environ.get("OMP_NUM_THREADS"),
                                       "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                       "default": speed.as_dict(), "default_row": auto_row(results, speed),
                                       "rounds": rounds, "results": results, "ratios_vs_fp32": rel},
                                      indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
