"""`python -m study.bench_matrix CONFIG [overrides]`: fp32, bf16, channels_last and torch.compile side by side.

Every setting is timed by the throughput protocol (study/bench.py) on the same model and input, each in a fresh
process (so peak memory is its own and one setting's allocator state does not help the next). On a shared machine
use `--rounds R`: the settings are measured R times, interleaved (the order rotates each round), each ratio is
taken within a round (against that round's fp32) and the table gives the medians over rounds. The table gives
train and inference images/s and their ratio to fp32; the JSON keeps every measurement. torch.compile gets
`--compile-timeout` seconds (default 120) and is reported as skipped, with the reason, when it fails or takes
longer. Choose the setting per model and machine from the numbers, not by habit (channels_last can be slower).
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

# name -> (train.amp, train.channels_last, train.compile)
SETTINGS: dict[str, tuple[bool, bool, bool]] = {
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "fp32+channels_last": (False, True, False),
    "bf16+channels_last": (True, True, False),
    "bf16+compile": (True, False, True),
}


def setting_overrides(name: str) -> list[str]:
    amp, cl, comp = SETTINGS[name]
    return [f"train.amp={str(amp).lower()}", f"train.channels_last={str(cl).lower()}",
            f"train.compile={str(comp).lower()}"]


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

    def ratio(name: str, key: str) -> str:
        text = f"{rel[name][key]:.2f}x"
        spread = rel[name].get(key + "_range")
        return text + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread and spread[0] != spread[1] else "")

    rows = []
    for name, r in results.items():
        if "skipped" in r:
            rows.append((name, "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"))
            continue
        rows.append((name, r["dtype"], f"{r['train_img_s']:.3g}", ratio(name, "train_img_s"),
                     f"{r['infer_img_s']:.3g}", ratio(name, "infer_img_s"), f"{r['latency_ms_p50']:.1f}",
                     f"{r['peak_mem_mb']:.0f} MB"))
    return tabulate(rows, headers=["setting", "dtype", "train img/s", "vs fp32", "infer img/s", "vs fp32",
                                   "p50 ms (b=1)", "peak mem"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench_matrix", description=__doc__.splitlines()[0])
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
    rounds: list[dict[str, dict[str, Any]]] = []
    for i in range(max(1, args.rounds)):
        order = names[i % len(names):] + names[:i % len(names)]  # rotate: no setting always runs first
        measured: dict[str, dict[str, Any]] = {}
        for name in order:
            if i and "skipped" in rounds[0][name]:
                measured[name] = rounds[0][name]  # a compile that failed or timed out once is not retried
                continue
            print(f"[bench] round {i + 1}: {name} ...", flush=True)
            timeout = args.compile_timeout if SETTINGS[name][2] else None
            measured[name] = measure(args.config, list(args.overrides), name, timeout)
        rounds.append({name: measured[name] for name in names})
    results, rel = summarize(rounds)
    print(table(results, rel))
    from study.atomic import atomic_write_text

    out = Path(args.out) if args.out else Path("results") / "bench" / f"matrix_{Path(args.config).stem}.json"
    atomic_write_text(out, json.dumps({"config": args.config, "overrides": args.overrides,
                                       "threads": os.environ.get("OMP_NUM_THREADS"),
                                       "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                       "rounds": rounds, "results": results, "ratios_vs_fp32": rel},
                                      indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
