"""Run a study: workers claim cells from one Optuna study, run each with run_one, then the study is audited.

`python -m study sweep configs/studies/table1.yaml [--workers N] [--storage URL] [dotted.overrides ...]`

- A grid cell is (variant, seed). All cells are enqueued once, under the study lock, as WAITING trials; a worker
  claims one by moving it to RUNNING, which the storage grants to exactly one worker. No GridSampler: it repeats
  and skips points under parallel workers and retries.
- A search (TPE, median pruning) asks new trials under the same lock, so the budget `n_trials` is a total over all
  workers and machines.
- Every claimed trial carries its worker (host:pid) and a heartbeat. Re-running the command re-queues the cells of
  dead workers with the same parameters; they resume from their checkpoint in the cell's stable folder. A cell that
  fails is retried up to `max_retries` times, then reported as failed.
- A cell whose config changed since it ran is refused, not mixed in.
- Each finished trial stores its run record in the storage too, so with a shared database every machine can write
  the complete results table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.atomic import atomic_write_text
from study.config import ConfigError, config_hash
from study.record import RECORD_FILE, RunRecord, read_record, run_dir, run_id, write_record
from study.search.space import (
    StudySpec,
    cell_config,
    grid_cells,
    load_study,
    study_manifest,
    suggest,
    trial_variant,
)
from study.search.storage import default_url, open_storage, redact, study_lock

HEARTBEAT_S = 15.0
STALE_S = 120.0  # a RUNNING trial of another host with no heartbeat for this long is taken as dead
RunFn = Callable[..., RunRecord]


class StudyError(RuntimeError):
    """A study cannot run as asked (changed config, unreachable storage...)."""


# ---------------------------------------------------------------- study state


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    if spec.search and spec.search.sampler == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=spec.search.sampler_seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=spec.search.sampler_seed if spec.search else 0)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
              if spec.search and spec.search.pruner == "median" else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction,
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def _worker_alive(t: FrozenTrial, now: float) -> bool:
    host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    start = t.datetime_start.timestamp() if t.datetime_start else now
    return now - float(t.user_attrs.get("heartbeat", start)) < STALE_S


def _check_unchanged(spec: StudySpec, trials: list[FrozenTrial], out_dir: str, cli: tuple[str, ...]) -> None:
    """Refuse to continue a study whose finished or running cells were computed from another config."""
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.RUNNING) or "config_hash" not in t.user_attrs:
            continue
        variant, seed = t.user_attrs["variant"], t.user_attrs["seed"]
        if spec.kind == "grid" and variant not in spec.variants:
            continue
        cfg = cell_config(spec, variant, seed, t.user_attrs.get("overrides"), out_dir, cli)
        if config_hash(cfg) != t.user_attrs["config_hash"]:
            raise StudyError(f"{spec.path}: cell {run_id(variant, seed)} ran with another config (hash "
                             f"{t.user_attrs['config_hash']}, now {config_hash(cfg)}); give the study a new "
                             f"name or remove its results and storage to start over")


def prepare(study: optuna.Study, spec: StudySpec, out_dir: str, cli: tuple[str, ...],
            retry_failed: bool = False) -> dict[str, int]:
    """Under the study lock: re-queue trials of dead workers, enqueue grid cells not yet done. Idempotent."""
    storage = study._storage
    trials = study.get_trials(deepcopy=False)
    _check_unchanged(spec, trials, out_dir, cli)
    now = time.time()
    requeued = 0
    for t in trials:
        if t.state == TrialState.RUNNING and "cell" in t.user_attrs and not _worker_alive(t, now):
            storage.set_trial_user_attr(t._trial_id, "lost", True)
            storage.set_trial_user_attr(t._trial_id, "error", "worker lost (killed or unreachable); re-queued")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params or t.system_attrs.get("fixed_params", {}), user_attrs=_identity(t))
            requeued += 1
    trials = study.get_trials(deepcopy=False)
    enqueued = 0
    if spec.kind == "grid":
        by_cell = _trials_by_cell(trials)
        for variant, seed in grid_cells(spec):
            mine = by_cell.get(run_id(variant, seed), [])
            if any(t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) for t in mine):
                continue
            failures = sum(1 for t in mine if t.state == TrialState.FAIL and not t.user_attrs.get("lost"))
            if failures <= spec.max_retries or retry_failed:
                study.enqueue_trial({"variant": variant, "seed": seed},
                                    user_attrs={"cell": run_id(variant, seed), "variant": variant, "seed": seed})
                enqueued += 1
    elif retry_failed:
        for mine in _trials_by_cell(trials).values():
            if mine and all(t.state == TrialState.FAIL for t in mine):
                study.enqueue_trial(mine[-1].params, user_attrs=_identity(mine[-1]))
                enqueued += 1
    return {"requeued": requeued, "enqueued": enqueued}


def _identity(t: FrozenTrial) -> dict[str, Any]:
    return {k: t.user_attrs[k] for k in ("cell", "variant", "seed") if k in t.user_attrs}


def _trials_by_cell(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    out: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if "cell" in t.user_attrs:
            out.setdefault(t.user_attrs["cell"], []).append(t)
    return out


def claim(study: optuna.Study, spec: StudySpec, url: str) -> optuna.Trial | None:
    """The next WAITING trial, or (searches) a new one within the total budget; None when there is no work."""
    storage = study._storage
    with study_lock(storage, url, spec.name):
        for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number):
            if storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        if spec.search is None:
            return None
        cells = {t.user_attrs.get("cell") for t in study.get_trials(deepcopy=False) if "cell" in t.user_attrs}
        if len(cells) >= spec.search.n_trials:
            return None
        trial = study.ask()
        variant, seed = trial_variant(trial.number), spec.seeds[0]
        for key, value in {"cell": run_id(variant, seed), "variant": variant, "seed": seed}.items():
            trial.set_user_attr(key, value)
        return trial


# ---------------------------------------------------------------- one worker


class _Heartbeat:
    """Marks a claimed trial as alive every HEARTBEAT_S seconds from a background thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int):
        self._stop = threading.Event()
        self._storage, self._trial_id = storage, trial_id
        self._beat()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self._storage.set_trial_user_attr(self._trial_id, "heartbeat", time.time())

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat is not fatal; staleness decides
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: StudySpec, url: str, out_dir: str,
              cli: tuple[str, ...], run_fn: RunFn) -> RunRecord | None:
    """Run one claimed trial with run_fn (run_one), report to Optuna, retry or give up on failure."""
    storage = study._storage
    tid = trial._trial_id
    attrs = storage.get_trial(tid).user_attrs
    variant, seed = attrs["variant"], attrs["seed"]
    if spec.search:
        params = suggest(trial, spec.search)
    else:
        trial.suggest_categorical("variant", list(spec.variants))
        trial.suggest_categorical("seed", list(spec.seeds))
        params = {}
    cfg = cell_config(spec, variant, seed, params, out_dir, cli)
    trial.set_user_attr("overrides", params)
    trial.set_user_attr("config_hash", config_hash(cfg))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

    def on_eval(step: int, metrics: dict[str, Any]) -> bool:
        value = metrics.get(spec.metric)
        if value is None or not math.isfinite(value):
            return False
        trial.report(float(value), step)
        return spec.search is not None and trial.should_prune()

    beat = _Heartbeat(storage, tid)
    try:
        record = run_fn(cfg, on_eval=on_eval)
    except Exception as e:  # noqa: BLE001 - run_one records its own failures; this is a last resort
        record = None
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        beat.stop()
    if record is not None:
        error = record.error
        trial.set_user_attr("record", record.to_dict())
        for key in ("miou", "miou_present", "pixel_acc", "mean_acc"):
            if isinstance(record.metrics.get(key), (int, float)):
                trial.set_user_attr(key, record.metrics[key])
    if record is not None and record.status == "completed":
        study.tell(trial, float(record.metrics[spec.metric]))
    elif record is not None and record.status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("error", error or "failed")
        study.tell(trial, state=TrialState.FAIL)
        with study_lock(storage, url, spec.name):
            mine = _trials_by_cell(study.get_trials(deepcopy=False))[attrs["cell"]]
            failures = sum(1 for t in mine if t.state == TrialState.FAIL and not t.user_attrs.get("lost"))
            if failures <= spec.max_retries:
                study.enqueue_trial(trial.params, user_attrs=_identity(storage.get_trial(tid)))
    return record


def work(spec: StudySpec, url: str, out_dir: str, cli: tuple[str, ...], run_fn: RunFn | None = None,
         on_trial: Callable[[], None] | None = None) -> int:
    """Claim and run trials until there is no work left; returns how many this worker ran."""
    if run_fn is None:
        from study.run import run_one as run_fn  # torch is imported only by workers
    storage = open_storage(url)
    study = open_study(spec, storage)
    done = 0
    while (trial := claim(study, spec, url)) is not None:
        run_trial(study, trial, spec, url, out_dir, cli, run_fn)
        done += 1
        if on_trial:
            on_trial()
    return done


# ---------------------------------------------------------------- progress, audit, outputs


def progress(study: optuna.Study, spec: StudySpec, started: float, workers: int) -> str:
    """One line: done / total, running, failed, pruned, ETA, best so far."""
    trials = study.get_trials(deepcopy=False)
    by_cell = _trials_by_cell(trials)
    total = len(grid_cells(spec)) if spec.kind == "grid" else spec.search.n_trials
    states = Counter(_cell_state(ts, spec) for ts in by_cell.values())
    done = states["completed"] + states["failed"] + states["pruned"]
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    durations = [t.duration.total_seconds() for t in trials if t.state == TrialState.COMPLETE and t.duration]
    eta = ""
    if durations and total > done:
        left = (total - done) * sum(durations) / len(durations) / max(1, workers)
        eta = f", ETA {left / 60:.1f} min"
    best = ""
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if completed:
        pick = max if spec.direction == "maximize" else min
        b = pick(completed, key=lambda t: t.value)
        best = f", best {spec.metric} {100 * b.value:.2f} ({b.user_attrs.get('cell')})"
    return (f"[{spec.name}] {done}/{total} done ({states['completed']} completed, {states['failed']} failed, "
            f"{states['pruned']} pruned), {running} running{eta}{best}; {time.time() - started:.0f}s elapsed")


def _cell_state(trials: list[FrozenTrial], spec: StudySpec) -> str:
    states = [t.state for t in trials]
    if TrialState.COMPLETE in states:
        return "completed"
    if TrialState.PRUNED in states:
        return "pruned"
    if TrialState.RUNNING in states or TrialState.WAITING in states:
        return "pending"
    failures = sum(1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("lost"))
    return "failed" if failures > spec.max_retries else "pending"


def audit(study: optuna.Study, spec: StudySpec) -> list[str]:
    """Problems with the study's coverage: every cell must have completed (or been pruned/failed) exactly once."""
    by_cell = _trials_by_cell(study.get_trials(deepcopy=False))
    expected = [run_id(v, s) for v, s in grid_cells(spec)] if spec.kind == "grid" else sorted(by_cell)
    problems = []
    for cell in expected:
        trials = by_cell.get(cell, [])
        completes = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        if completes > 1:
            problems.append(f"{cell}: completed {completes} times")
        state = _cell_state(trials, spec)
        if state == "pending":
            problems.append(f"{cell}: not finished (re-run the command to resume)")
        elif state == "failed":
            errors = [t.user_attrs.get("error", "") for t in trials if not t.user_attrs.get("lost")]
            problems.append(f"{cell}: failed {len(errors)} times: {errors[-1]}")
    return problems


def export_records(study: optuna.Study, out_dir: str, spec: StudySpec) -> int:
    """Write the run record of every finished trial that is missing here (from other machines)."""
    written = 0
    for t in study.get_trials(deepcopy=False):
        rec = t.user_attrs.get("record")
        if not rec or t.state not in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
            continue
        folder = run_dir(out_dir, spec.name, rec["variant"], rec["seed"])
        path = folder / RECORD_FILE
        if path.exists():
            try:
                if read_record(path).status != "running":
                    continue
            except ValueError:
                pass
        write_record(RunRecord.from_dict(rec), folder)
        written += 1
    return written


def write_search_outputs(study: optuna.Study, study_dir: Path) -> None:
    """trials.csv and importances.json for the report (searches only)."""
    df = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    df["state"] = df["state"].astype(str)
    atomic_write_text(study_dir / "trials.csv", df.to_csv(index=False))
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):  # fewer than two completed trials, or a constant objective
        importances = {}
    atomic_write_text(study_dir / "importances.json",
                      json.dumps({k: float(v) for k, v in importances.items()}, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- command line


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


def _spawn_workers(args: argparse.Namespace, url: str, n: int) -> list[subprocess.Popen]:
    threads = max(1, (os.cpu_count() or 1) // n)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "study", "sweep", args.study_file, *args.overrides, f"run.threads={threads}",
           "--worker-only", "--storage", url, "--out", args.out] + (["--seeds", args.seeds] if args.seeds else [])
    return [subprocess.Popen(cmd, env=env) for _ in range(n)]


def main(argv: list[str] | None = None, run_fn: RunFn | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
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
    atomic_write_text(study_dir / "study.json",
                      json.dumps(study_manifest(spec, command, Path.cwd()), indent=2, sort_keys=True) + "\n")
    started = time.time()
    print(f"[{spec.name}] {spec.kind}, storage {redact(url)}, {args.workers} worker(s); "
          f"re-queued {counts['requeued']}, enqueued {counts['enqueued']}", flush=True)
    print(progress(study, spec, started, args.workers), flush=True)
    if args.workers == 1:
        work(spec, url, args.out, cli, run_fn,
             on_trial=lambda: print(progress(study, spec, started, 1), flush=True))
    else:
        procs = _spawn_workers(args, url, args.workers)
        last = ""
        while any(p.poll() is None for p in procs):
            time.sleep(2.0)
            line = progress(study, spec, started, args.workers)
            if line.split(";")[0] != last:
                print(line, flush=True)
                last = line.split(";")[0]
        for p in procs:
            if p.returncode:
                print(f"[{spec.name}] a worker exited with status {p.returncode}", file=sys.stderr)

    export_records(study, args.out, spec)
    if spec.search:
        write_search_outputs(study, study_dir)
    from study.results.table import write_table

    table = write_table(study_dir)
    print(progress(study, spec, started, args.workers), flush=True)
    problems = audit(study, spec)
    print(f"[{spec.name}] table: {study_dir / 'runs.parquet'} ({len(table)} rows)")
    if problems:
        print(f"[{spec.name}] audit: {len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"[{spec.name}] audit: every cell ran exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
