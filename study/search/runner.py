"""`python -m study sweep STUDY.yaml [--workers N] [--storage URL] [dotted.overrides ...]`: run a study.

Prepares the study (enqueue cells, re-queue dead workers' cells), runs the workers (this process, or N local
processes), then exports records, writes the results table and audits that every cell ran exactly once. The
machinery lives beside it: queue.py (cells and claiming), worker.py (one worker), outputs.py (progress, audit).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from study.atomic import disk_error, disk_error_line
from study.config import ConfigError
from study.manifest import write_manifest
from study.search.outputs import audit, export_records, progress, write_search_outputs
from study.search.queue import StudyError, open_study, prepare
from study.search.space import cell_config, load_study, study_manifest
from study.search.storage import default_url, open_storage, redact, study_lock
from study.search.supervise import WorkerSpec, supervise
from study.search.variant_bench import bench_variants
from study.search.worker import RunFn, work

RESTARTS_PER_WORKER = 3  # a study replaces at most 3 x N dead workers before it gives up (re-run to go on)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m study sweep", description="Run a grid or Optuna study.")
    p.add_argument("study_file")
    p.add_argument("overrides", nargs="*", help="dotted config overrides applied to every cell")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: a journal file in results/<study>/)")
    p.add_argument("--out", default="results", help="results folder (default results)")
    p.add_argument("--retry-failed", action="store_true", help="run cells that exhausted their retries again")
    p.add_argument("--seeds", help="comma-separated seeds replacing the study file's (e.g. 0,1)")
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_intermixed_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def local_workers(args: argparse.Namespace, url: str, n: int) -> list[WorkerSpec]:
    """n CPU worker processes on this machine, the cores split evenly among them."""
    threads = max(1, (os.cpu_count() or 1) // n)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = (sys.executable, "-m", "study", "sweep", args.study_file, *args.overrides, f"run.threads={threads}",
           "--worker-only", "--storage", url, "--out", args.out) + (("--seeds", args.seeds) if args.seeds else ())
    return [WorkerSpec(f"worker {i} (cpu, {threads} thread{'s' if threads > 1 else ''})", cmd, env)
            for i in range(n)]


def main(argv: list[str] | None = None, run_fn: RunFn | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return sweep(args, run_fn)
    except OSError as e:
        if not disk_error(e):
            raise
        print(f"error: {disk_error_line(e, args.out)}", file=sys.stderr, flush=True)
        return 2


def sweep(args: argparse.Namespace, run_fn: RunFn | None) -> int:
    try:
        spec = load_study(args.study_file)
        if args.seeds:
            try:
                seeds = tuple(int(s) for s in args.seeds.split(","))
            except ValueError:
                raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
            spec = dataclasses.replace(spec, seeds=seeds)
        cli = tuple(args.overrides)
        for variant in spec.variants:  # validate the CLI overrides against every cell before any work
            cell_config(spec, variant, spec.seeds[0], None, args.out, cli)
        study_dir = Path(args.out) / spec.name
        url = args.storage or default_url(study_dir)
        if args.worker_only:
            work(spec, url, args.out, cli, run_fn)
            return 0
        storage = open_storage(url)
        study = open_study(spec, storage)
        with study_lock(storage, url, spec.name):
            counts = prepare(study, spec, args.out, cli, args.retry_failed)
    except (ConfigError, StudyError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    command = shlex.join(["python", "-m", "study", "sweep", args.study_file, *args.overrides]
                         + (["--seeds", args.seeds] if args.seeds else [])
                         + (["--storage", redact(args.storage)] if args.storage else []))
    write_manifest(study_dir, study_manifest(spec, command, Path.cwd()))
    started = time.time()
    print(f"[{spec.name}] {spec.kind}, storage {redact(url)}, {args.workers} worker(s); "
          f"re-queued {counts['requeued']}, enqueued {counts['enqueued']}", flush=True)
    print(progress(study, spec, started, args.workers), flush=True)
    if args.workers == 1:
        work(spec, url, args.out, cli, run_fn,
             on_trial=lambda: print(progress(study, spec, started, 1), flush=True))
    else:
        def requeue(pid: int) -> int:  # the dead worker's RUNNING cell back to WAITING, as a re-run would
            with study_lock(storage, url, spec.name):
                return prepare(study, spec, args.out, cli)["requeued"]

        last = ""

        def tick() -> None:
            nonlocal last
            line = progress(study, spec, started, args.workers)
            if line.split(";")[0] != last:
                print(line, flush=True)
                last = line.split(";")[0]

        specs = local_workers(args, url, args.workers)
        result = supervise(specs, on_death=requeue, max_restarts=RESTARTS_PER_WORKER * len(specs), tick=tick,
                           say=lambda line: print(f"[{spec.name}] {line}", file=sys.stderr, flush=True))
        if result.restarts or result.unreplaced:
            print(f"[{spec.name}] workers: {result.summary()}", flush=True)

    export_records(study, args.out, spec)
    bench_problems = bench_variants(spec, args.out, cli, log=lambda line: print(line, flush=True))
    if spec.search:
        write_search_outputs(study, study_dir)
    from study.results.table import ResultsError, write_table

    try:
        rows = f"{study_dir / 'runs.parquet'} ({len(write_table(study_dir))} rows)"
    except ResultsError as e:  # no record yet (every worker stopped before finishing a cell)
        rows = f"not written ({e})"
    print(progress(study, spec, started, args.workers), flush=True)
    problems = audit(study, spec) + bench_problems
    print(f"[{spec.name}] table: {rows}")
    if problems:
        print(f"[{spec.name}] audit: {len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"[{spec.name}] audit: every cell ran exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
