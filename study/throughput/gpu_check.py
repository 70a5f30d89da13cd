"""`python -m study.throughput.gpu_check --out DIR`: what one GPU does with this harness, in under 8 minutes.

Steps, each a process of its own with a timeout, all within one deadline (`--budget`, default 460 s):
1. PSPNet with the dilated ResNet-50 (configs/base.yaml's model, random weights) at 512x512, batch 8, timed by the
   throughput protocol in fp32, bf16, bf16 + channels_last and bf16 + channels_last + torch.compile (compile last:
   it is the step most likely to run out of time), with MFU against the GPU's datasheet peak and utilisation of
   the peak measured in the same process. cuDNN autotuning is on (run.deterministic=false).
2. A one-GPU torchrun cell: `torchrun --nproc_per_node 1 -m study run configs/probe.yaml` (NCCL, DDP,
   SyncBatchNorm with world size 1).
3. The probe Table 1 with `--workers-per-gpu K` (default 4) on seeds `--seeds` (default 0,1): its wall time.
4. The packing measurement (study.throughput.packing, not part of the product): probe training steps of K = 2, 4, 8
   seeds packed into one network against the same K one after another, so the GPU says whether packing would pay.
It writes DIR/gpu_check.json (every step: command, timeout, seconds, status, results) and DIR/gpu_check.md (a
table ready for the README). Without a GPU it says so in one line and exits 0; `--plan` prints the steps and runs
nothing. It needs what the repository installs (torch, timm...; the sweep needs optuna), not nox.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = [  # (name, train.amp, train.channels_last, train.compile, timeout s)
    ("fp32", False, False, False, 90),
    ("bf16", True, False, False, 75),
    ("bf16+channels_last", True, True, False, 75),
    ("bf16+channels_last+compile", True, True, True, 240),
]
BENCH_OVERRIDES = ("bench.batch_size=8", "bench.image_size=[512,512]", "bench.warmup=3",
                   "bench.iters=10", "bench.repeats=3", "bench.latency_iters=20", "bench.peak_seconds=1",
                   "run.deterministic=false", "train.force_settings=true")
MIN_STEP_S = 20  # a step with less time than this left in the budget is skipped


@dataclass(frozen=True)
class Step:
    """One process of the check: a name, what it shows, its command line, timeout and the file it writes."""

    name: str
    what: str
    argv: tuple[str, ...]
    timeout_s: int
    writes: str = ""  # a JSON file the step writes (bench steps), or the folder it fills
    needs: tuple[str, ...] = field(default_factory=tuple)  # importable modules it needs beyond torch


def plan(out: Path, *, python: str = sys.executable, workers_per_gpu: int = 4, seeds: str = "0,1") -> list[Step]:
    """The check's steps, in the order they run (pure: nothing is run or imported)."""
    steps = []
    for name, amp, cl, comp, timeout in BENCH:
        if comp:
            continue
        steps.append(_bench_step(out, python, name, amp, cl, comp, timeout))
    steps.append(Step("torchrun_cell", "one probe cell as a torchrun job on one GPU (NCCL, DDP, SyncBatchNorm)",
                      (python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "study",
                       "run", "configs/probe.yaml", "run.study=torchrun_cell", f"run.out_dir={out / 'torchrun'}"),
                      150, str(out / "torchrun")))
    steps.append(Step("table1", f"the probe Table 1, seeds {seeds}, {workers_per_gpu} workers on the GPU, one run "
                                f"at a time each",
                      (python, "-m", "study", "sweep", "configs/studies/table1.yaml", "--workers-per-gpu",
                       str(workers_per_gpu), "--seeds", seeds, "--out", str(out / "table1")),
                      300, str(out / "table1"), ("optuna",)))
    steps.append(Step("packing", "the packing measurement: probe training steps, K = 2, 4, 8 seeds packed into one "
                                 "network vs one by one",
                      (python, "-m", "study.throughput.packing", "configs/probe.yaml", "--members", "2,4,8",
                       "--device", "cuda", "--out", str(out / "packing.json")), 120, str(out / "packing.json")))
    for name, amp, cl, comp, timeout in BENCH:
        if comp:
            steps.append(_bench_step(out, python, name, amp, cl, comp, timeout))
    return steps


def _bench_step(out: Path, python: str, name: str, amp: bool, cl: bool, comp: bool, timeout: int) -> Step:
    switches = (f"train.amp={str(amp).lower()}", f"train.channels_last={str(cl).lower()}",
                f"train.compile={str(comp).lower()}")
    target = out / f"bench_{name.replace('+', '_')}.json"
    return Step(f"bench {name}", f"PSPNet-ResNet50 512x512 batch 8, {name}",
                (python, "-m", "study", "bench", "configs/base.yaml", *BENCH_OVERRIDES, *switches,
                 f"run.out_dir={out / 'bench'}", "--out", str(target)), timeout, str(target))


def run_steps(steps: list[Step], budget_s: float, log=print) -> list[dict[str, Any]]:
    """Run each step with min(its timeout, time left); skip what does not fit or cannot import its needs."""
    import importlib.util

    deadline = time.monotonic() + budget_s
    done = []
    for step in steps:
        entry: dict[str, Any] = {**asdict(step), "command": shlex.join(step.argv)}
        left = deadline - time.monotonic()
        missing = [m for m in step.needs if importlib.util.find_spec(m) is None]
        if missing:
            entry.update(status="skipped", reason=f"{', '.join(missing)} not importable (install it or carry its "
                                                  f"wheels, see docs/speed.md)")
        elif left < MIN_STEP_S:
            entry.update(status="skipped", reason=f"out of the {budget_s:.0f} s budget")
        else:
            timeout = min(step.timeout_s, int(left))
            log(f"[gpu_check] {step.name} (timeout {timeout} s) ...")
            t0 = time.monotonic()
            status, tail = _run(step.argv, timeout)
            entry.update(status=status, seconds=round(time.monotonic() - t0, 1), timeout_used=timeout,
                         tail=tail if status != "ok" else [])
            log(f"[gpu_check] {step.name}: {status} in {entry['seconds']} s")
        entry["result"] = _result(step) if entry["status"] == "ok" else None
        done.append(entry)
    return done


def _run(argv: tuple[str, ...], timeout: int) -> tuple[str, list[str]]:
    """Run argv in its own process group; at the timeout end the whole group (sweep workers, torchrun ranks)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.communicate(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        return f"timed out after {timeout} s", []
    tail = output.strip().splitlines()[-3:]
    return ("ok", []) if proc.returncode == 0 else (f"failed (status {proc.returncode})", tail)


def _result(step: Step) -> dict[str, Any] | None:
    """What a finished step measured: the bench JSON's throughput, the cell's record, the sweep's cells."""
    path = Path(step.writes)
    try:
        if step.name.startswith("bench"):
            return json.loads(path.read_text())["throughput"]
        if step.name == "packing":
            return json.loads(path.read_text())
        records = [json.loads(p.read_text()) for p in sorted(path.glob("*/runs/*/record.json"))]
        if step.name == "torchrun_cell" and records:
            r = records[0]
            return {"status": r["status"], "miou": r["metrics"].get("miou"), "cost": r["cost"],
                    "world_size": r["provenance"].get("world_size"), "bn": r["provenance"].get("bn"),
                    "settings": r["provenance"].get("settings")}
        return {"cells": len(records), "completed": sum(r["status"] == "completed" for r in records),
                "train_seconds": round(sum(r["cost"].get("train_seconds", 0) for r in records), 1)}
    except (OSError, ValueError, KeyError):
        return None


def markdown(report: dict[str, Any]) -> str:
    """The README-ready summary: the model's table, then one line per study step."""
    lines = [f"GPU check on {report['device']} (torch {report['torch']}, CUDA {report['cuda']}), "
             f"{report['finished_at']}, {report['total_seconds']:.0f} s in all.", "",
             "| setting | train img/s | infer img/s | latency p50 (batch 1) | peak memory | train TFLOP/s "
             "| MFU (datasheet) | of measured peak |", "|---|---|---|---|---|---|---|---|"]
    for s in report["steps"]:
        if not s["name"].startswith("bench"):
            continue
        name, r = s["name"].removeprefix("bench "), s["result"]
        if r is None:
            lines.append(f"| {name} | {s['status']}{': ' + s['reason'] if s.get('reason') else ''} |||||||")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "peak unknown"
        util = f"{100 * r['utilisation_train']:.1f}%" if r.get("utilisation_train") is not None else "-"
        lines.append(f"| {name} | {r['train_img_s']:.1f} | {r['infer_img_s']:.1f} | {r['latency_ms_p50']:.1f} ms "
                     f"| {r['peak_mem_mb'] / 1024:.1f} GiB | {r['train_gflop_s'] / 1e3:.0f} | {mfu} | {util} |")
    lines += ["", "PSPNet-ResNet50 (random weights, 4 classes), 512x512, batch 8, synthetic input, forward + backward "
              "+ SGD step; MFU counts 3x the forward FLOPs of torch.utils.flop_counter against the dense "
              "datasheet peak of the dtype (fp32 against TF32: cuDNN's default); cuDNN autotuning on.", ""]
    for s in report["steps"]:
        r = s["result"]
        if s["name"] == "torchrun_cell":
            text = (f"{s['seconds']:.0f} s, world size {r['world_size']}, {r['bn']}, mIoU {100 * r['miou']:.1f}"
                    if r else _why(s))
            lines.append(f"- One probe cell as a one-GPU torchrun job: {text}.")
        elif s["name"] == "table1":
            text = (f"{s['seconds']:.0f} s for {r['cells']} cells ({r['completed']} completed), "
                    f"{s['argv'][s['argv'].index('--workers-per-gpu') + 1]} workers on the GPU, one run at a time "
                    f"each" if r else _why(s))
            lines.append(f"- The probe Table 1 (`{shlex.join(s['argv'][1:])}`): {text}.")
        elif s["name"] == "packing":
            text = ("; ".join(f"K={row['members']} {row['ratio']:.2f}x" for row in r["rows"]) + f" ({r['why']})"
                    if r else _why(s))
            lines.append(f"- Packing measurement (not in the product), a member's step packed against one run's: "
                         f"{text}.")
    return "\n".join(lines) + "\n"


def _why(step: dict[str, Any]) -> str:
    return step["status"] + (f": {step['reason']}" if step.get("reason") else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.throughput.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/gpu_check", help="output folder (default results/gpu_check)")
    p.add_argument("--workers-per-gpu", type=int, default=4, help="probe cells side by side on the GPU")
    p.add_argument("--seeds", default="0,1", help="seeds of the probe Table 1 (default 0,1: 14 cells)")
    p.add_argument("--budget", type=float, default=460.0, help="seconds for all steps together (default 460)")
    p.add_argument("--plan", action="store_true", help="print the steps and their timeouts; run nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    steps = plan(out, workers_per_gpu=args.workers_per_gpu, seeds=args.seeds)
    if args.plan:
        for s in steps:
            print(f"{s.name} (timeout {s.timeout_s} s): {shlex.join(s.argv)}")
        print(f"all within {args.budget:.0f} s")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing run")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = run_steps(steps, args.budget)
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "python": platform.python_version(), "cpu_count": os.cpu_count(),
              "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "total_seconds": time.monotonic() - started, "budget_s": args.budget, "steps": results}
    from study.atomic import atomic_write_text

    atomic_write_text(out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    atomic_write_text(out / "gpu_check.md", text)
    print(text + f"-> {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return 0 if all(s["status"] in ("ok", "skipped") for s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
