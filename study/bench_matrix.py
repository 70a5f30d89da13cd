"""`python -m study.bench_matrix CONFIG [overrides]`: fp32, bf16, channels_last and torch.compile side by side.

Every setting is timed by the throughput protocol (study/bench.py) on the same model and input, each in a fresh
process (so peak memory is its own and one setting's allocator state does not help the next). The table gives
train and inference images/s and their ratio to fp32; the JSON keeps every measurement. torch.compile gets
`--compile-timeout` seconds (default 120) and is reported as skipped, with the reason, when it fails or takes
longer. Choose the setting per model and machine from the numbers, not by habit (channels_last can be slower).
"""

from __future__ import annotations

import argparse
import json
import os
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
    """train and inference images/s of every setting over fp32's."""
    base = results.get("fp32", {})
    out = {}
    for name, r in results.items():
        out[name] = {key: (r[key] / base[key] if key in r and base.get(key) else None)
                     for key in ("train_img_s", "infer_img_s")}
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    from tabulate import tabulate

    rel = ratios(results)
    rows = []
    for name, r in results.items():
        if "skipped" in r:
            rows.append((name, "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"))
            continue
        rows.append((name, r["dtype"], f"{r['train_img_s']:.3g}", f"{rel[name]['train_img_s']:.2f}x",
                     f"{r['infer_img_s']:.3g}", f"{rel[name]['infer_img_s']:.2f}x", f"{r['latency_ms_p50']:.1f}",
                     f"{r['peak_mem_mb']:.0f} MB"))
    return tabulate(rows, headers=["setting", "dtype", "train img/s", "vs fp32", "infer img/s", "vs fp32",
                                   "p50 ms (b=1)", "peak mem"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench_matrix", description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--compile-timeout", type=float, default=120.0, help="seconds for the compile setting")
    p.add_argument("--out", help="JSON file (default results/bench/matrix_<config stem>.json)")
    args = p.parse_intermixed_args(argv)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        print(f"error: --settings: unknown {unknown}; known: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    if "fp32" not in names:
        names.insert(0, "fp32")  # the reference of every ratio
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        timeout = args.compile_timeout if SETTINGS[name][2] else None
        results[name] = measure(args.config, list(args.overrides), name, timeout)
    print(table(results))
    from study.atomic import atomic_write_text

    out = Path(args.out) if args.out else Path("results") / "bench" / f"matrix_{Path(args.config).stem}.json"
    atomic_write_text(out, json.dumps({"config": args.config, "overrides": args.overrides,
                                       "threads": os.environ.get("OMP_NUM_THREADS"),
                                       "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                       "results": results, "ratios_vs_fp32": ratios(results)},
                                      indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
