"""`python -m study sweep STUDY.yaml [--workers N] [--storage URL] [dotted.overrides ...]`: run a study.

Prepares the study (enqueue cells, re-queue dead workers' cells), runs the workers (this process, local processes
pinned to GPUs by placement.py, torchrun jobs per cell by cell_job.py, or SLURM jobs by slurm.py; `--dry-run`
prints the plan), then exports records, writes the results table and audits that every cell ran exactly once. The
machinery lives beside it: queue.py (cells and claiming), worker.py (one worker), outputs.py (progress, audit).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from study.atomic import disk_error, disk_error_line
from study.config import ConfigError, config_hash
from study.manifest import ManifestError, read_manifest, write_manifest
from study.registration import finished_runs, register
from study.search.outputs import audit, export_records, progress, write_search_outputs
from study.search.placement import (
    PlacementError,
    Slot,
    describe,
    gpu_count,
    local_plan,
    parse_gpus,
    usable_cores,
)
from study.search.queue import StudyError, cells_left, open_study, prepare
from study.search.rounds import check_plan, keep_plan, next_cells, plan_line, start_cells
from study.search.slurm import check_storage, node_slots, submit_and_wait
from study.search.space import StudySpec, cell_config, grid_cells, load_study, study_manifest
from study.search.storage import default_url, open_storage, redact, study_lock
from study.search.supervise import STORAGE_ENV, local_workers, supervise
from study.search.variants import bench_variants
from study.search.worker import RunFn, work

RESTARTS_PER_WORKER = 3  # a study replaces at most 3 x N dead workers before it gives up (re-run to go on)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m study sweep", description="Run a grid or Optuna study.")
    p.add_argument("study_file")
    p.add_argument("overrides", nargs="*", help="dotted config overrides applied to every cell")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: on CPU, usable cores / "
                   "the study's run.threads, one thread a run when unset; one per GPU; with GPUs, N spread over them)")
    p.add_argument("--gpus", default=None,
                   help="GPUs for local workers, e.g. 0,1,2,3 (default: every visible GPU; 'cpu' for none)")
    p.add_argument("--workers-per-gpu", type=int, default=1, help="cells run side by side on one GPU (default 1)")
    p.add_argument("--gpus-per-cell", type=int, default=1,
                   help="run each cell as a torchrun (DDP) job over G GPUs (on CPU: G gloo processes)")
    p.add_argument("--dry-run", action="store_true", help="print the cells left and the worker plan; run nothing")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local worker processes, or SLURM jobs submitted with submitit (needs a database --storage)")
    p.add_argument("--slurm-partition", default=None, help="SLURM partition")
    p.add_argument("--slurm-time", type=int, default=60, help="SLURM time limit per job, minutes (default 60)")
    p.add_argument("--slurm-gpus-per-job", type=int, default=1, help="GPUs of one node per job (default 1)")
    p.add_argument("--slurm-jobs", type=int, default=1, help="number of worker jobs (default 1)")
    p.add_argument("--slurm-cpus-per-job", type=int, default=None,
                   help="CPU cores per job (default: the cluster's; data loading and threads need several)")
    p.add_argument("--slurm-cluster", default=None, help=argparse.SUPPRESS)  # submitit: "local" for tests
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: $STUDY_STORAGE_URL, which keeps a "
                   "password out of ps; else a journal file in results/<study>/)")
    p.add_argument("--out", default="results", help="results folder (default results)")
    p.add_argument("--retry-failed", action="store_true", help="run cells that exhausted their retries again")
    p.add_argument("--seeds", help="comma-separated seeds replacing the study file's (e.g. 0,1)")
    p.add_argument("--resume-from", metavar="DIR",
                   help="take finished cells from another copy of the study's records (DIR/runs/<cell>/record.json, "
                        "e.g. reports/_inputs/<study>): a record with the cell's config hash and data is not retrained")
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_intermixed_args(argv)
    args.storage = args.storage or os.environ.get(STORAGE_ENV) or None
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be >= 1")
    for name in ("workers_per_gpu", "gpus_per_cell", "slurm_time", "slurm_gpus_per_job", "slurm_jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def cpu_workers(args: argparse.Namespace, run_threads: int) -> str | None:
    """Without GPUs and without --workers: as many workers as this process's cores hold runs of `run_threads`
    threads (the study's run.threads; 0, torch's default, counts as one: narrow models train best at one thread a
    run, side by side). Sets args.workers and returns the line that says why; None where it chose nothing."""
    asked = parse_gpus(args.gpus)  # None: every visible GPU; []: none ('cpu')
    if args.workers is not None or args.executor != "local" or (asked if asked is not None else gpu_count()):
        return None
    cores, threads = usable_cores(), max(1, run_threads)
    args.workers = max(1, cores // threads)
    return (f"{args.workers} worker(s): {cores} usable core(s), {threads} thread(s) a run "
            f"({'run.threads' if run_threads else 'run.threads unset: one'}; --workers N overrides)")


def plan_for(args: argparse.Namespace) -> tuple[list[Slot], bool]:
    """The workers of this machine (or of one SLURM job's node) and whether GPUs are around; sets args.workers."""
    if args.executor == "slurm":
        check_storage(args.storage)
        slots, has_gpus = node_slots(args), True
    else:
        slots, count = local_plan(args, check=not args.dry_run)
        has_gpus = count > 0
    args.workers = len(slots) * (args.slurm_jobs if args.executor == "slurm" else 1)
    return slots, has_gpus


def worker_run_fn(args: argparse.Namespace, run_fn: RunFn | None, env: dict[str, str] | None = None) -> RunFn | None:
    """run_one in the worker, or a torchrun job per cell with --gpus-per-cell G > 1."""
    if run_fn is None and args.gpus_per_cell > 1:
        from study.search.cell_job import torchrun_cell

        return torchrun_cell(args.gpus_per_cell, env)
    return run_fn


def dry_run(args: argparse.Namespace, spec, url: str, slots: list[Slot]) -> None:
    """Print the cells left (read from the storage, nothing enqueued) and one line per worker."""
    study = None
    if not url.startswith("journal:") or Path(url.removeprefix("journal:")).exists():
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.load_study(study_name=spec.name, storage=open_storage(url))
        except KeyError:
            study = None
    if spec.on_demand:  # the rounds so far; later rounds follow from the results
        spec = start_cells(study, spec)
        print(plan_line(spec))
    left, total = cells_left(study, spec)
    print(f"[{spec.name}] dry run: {left} of {total} cell(s) left, storage {redact(url)}")
    if args.executor == "slurm":
        print(f"  {args.slurm_jobs} SLURM job(s), partition {args.slurm_partition or '(default)'}, "
              f"{args.slurm_time} min, {args.slurm_gpus_per_job} GPU(s) per job; on each node:")
    print(f"  {len(slots)} worker(s)" + (f", {args.gpus_per_cell} processes per cell (torchrun)"
                                          if args.gpus_per_cell > 1 else ""))
    print("\n".join(describe(slots)))


def execute(args: argparse.Namespace, spec, *, run_fn: RunFn | None, study, storage, url: str,
            slots: list[Slot], has_gpus: bool, started: float) -> int | None:
    """Run the workers until the cells enqueued are done: in this process, as supervised local processes, or as
    SLURM jobs. None when they ran; 2 when SLURM could not be used."""
    cli = tuple(args.overrides)
    if args.executor == "slurm":
        try:
            submit_and_wait(args, url, spec.name, Path(args.out) / spec.name)
        except PlacementError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif len(slots) == 1 and not slots[0].gpus and (slots[0].procs > 1 or not has_gpus):  # in this process
        work(spec, url, args.out, cli, worker_run_fn(args, run_fn, slots[0].env()),
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

        specs = local_workers(args, url, slots)
        result = supervise(specs, on_death=requeue, max_restarts=RESTARTS_PER_WORKER * len(specs), tick=tick,
                           say=lambda line: print(f"[{spec.name}] {line}", file=sys.stderr, flush=True))
        if result.restarts or result.unreplaced:
            print(f"[{spec.name}] workers: {result.summary()}", flush=True)
    return None


def main(argv: list[str] | None = None, run_fn: RunFn | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return sweep(args, run_fn)
    except OSError as e:
        if not disk_error(e):
            raise
        print(f"error: {disk_error_line(e, args.out)}", file=sys.stderr, flush=True)
        return 2


def take_finished(spec, source: Path, out_dir: str, cli: tuple[str, ...]) -> int:
    """Copy into results/<study>/runs/ every completed run under source/runs/ whose config hash is its cell's and
    whose data fingerprint is what the cell reads now (a mismatch is refused: StudyError), with the files beside its
    record (qualitative strips), the record last; and each variant's throughput file whose config hash is current,
    so nothing is timed again. Returns how many runs were taken."""
    from study.atomic import atomic_write_bytes
    from study.data.fingerprint import data_fingerprint
    from study.record import RECORD_FILE, completed_record, read_record, run_dir
    from study.search.variants import take_bench

    if not (source / "runs").is_dir():
        raise StudyError(f"--resume-from: {source / 'runs'} not found")
    taken, data = 0, {}
    for variant, seed in grid_cells(spec):
        cfg = cell_config(spec, variant, seed, None, out_dir, cli)
        src = source / "runs" / run_dir("", "", variant, seed).name / RECORD_FILE
        dest = run_dir(out_dir, spec.name, variant, seed)
        if not src.exists() or completed_record(dest, config_hash(cfg)) is not None:
            continue
        if completed_record(src.parent, config_hash(cfg)) is None:
            continue  # another config, or not completed: the cell trains
        old = read_record(src).provenance.get("data_fingerprint")
        if old:
            key = repr(cfg.data)
            data[key] = data.get(key) or data_fingerprint(cfg.data, (cfg.data.train_split, cfg.data.val_split))
            if data[key] != old:
                raise StudyError(f"--resume-from: {src} was trained on other data (fingerprint {old}, now "
                                 f"{data[key]} at data.root {cfg.data.root})")
        for extra in sorted(p for p in src.parent.rglob("*") if p.is_file() and p != src):
            atomic_write_bytes(dest / extra.relative_to(src.parent), extra.read_bytes())
        atomic_write_bytes(dest / RECORD_FILE, src.read_bytes())
        taken += 1
    take_bench(spec, source, out_dir, cli)
    return taken


def registered(study_dir: Path, spec, source: Path | None = None) -> list[dict]:
    """The study file's registrations with the file as this sweep finds it (study.registration): the first sweep
    records it before any cell runs; a later one that finds it changed records that, with the runs ended by then.
    A sweep resumed from another copy of the study's records (`source`, --resume-from) continues that copy's
    history when its own folder has none, so what changed before the copy was made is not lost."""
    previous = read_manifest(study_dir)
    history = previous.registrations if previous else None
    if not history and source is not None:
        copied = read_manifest(source)
        history = copied.registrations if copied else None
    at = datetime.now(UTC).isoformat(timespec="seconds")
    return register(history, Path(spec.path).read_text(), at, finished_runs(study_dir))


def check_study_data(spec, out_dir: str, cli: tuple[str, ...]) -> None:
    """Every data set the study's cells read, opened and checked once before any cell runs (study.data.build.
    check_data): a bad file is one error line, not a failure in every cell."""
    from study.data.build import check_data
    from study.data.common import DatasetError

    seen = set()
    for variant, seed in grid_cells(spec) if spec.variants else []:
        data = cell_config(spec, variant, seed, None, out_dir, cli).data
        if repr(data) not in seen:
            seen.add(repr(data))
            try:
                check_data(data)
            except DatasetError as e:
                raise StudyError(str(e).splitlines()[0]) from None


def sweep(args: argparse.Namespace, run_fn: RunFn | None) -> int:
    try:
        spec = _load(args)
        cli = tuple(args.overrides)
        study_dir = Path(args.out) / spec.name
        url = args.storage or default_url(study_dir)
        if args.worker_only:
            work(spec, url, args.out, cli, worker_run_fn(args, run_fn))
            return 0
        chosen = cpu_workers(args, cell_config(spec, *grid_cells(spec)[0], None, args.out, cli).run.threads) \
            if spec.search is None and run_fn is None else None  # a given run_fn (a stand-in) runs in this process
        if chosen:
            print(f"[{spec.name}] {chosen}", flush=True)
        slots, has_gpus = plan_for(args)
        if args.dry_run:
            dry_run(args, spec, url, slots)
            return 0
        check_study_data(spec, args.out, cli)
        if args.resume_from:
            taken = take_finished(spec, Path(args.resume_from), args.out, cli)
            print(f"[{spec.name}] {taken} finished cell(s) taken from {args.resume_from}", flush=True)
        storage = open_storage(url)
        study = open_study(spec, storage)
        if spec.on_demand:
            spec = start_cells(study, spec)
        with study_lock(storage, url, spec.name):
            if spec.on_demand:
                check_plan(study, spec)
            counts = prepare(study, spec, args.out, cli, args.retry_failed)
            if spec.on_demand:
                keep_plan(study, spec)
    except (ConfigError, StudyError, RuntimeError, PlacementError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    command = shlex.join(["python", "-m", "study", "sweep", args.study_file, *args.overrides]
                         + (["--seeds", args.seeds] if args.seeds else [])
                         + (["--storage", redact(args.storage)] if args.storage else []))
    try:
        registrations = registered(study_dir, spec, Path(args.resume_from) if args.resume_from else None)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_manifest(study_dir, study_manifest(spec, command, Path.cwd(), registrations))
    started = time.time()
    print(f"[{spec.name}] {spec.kind}, storage {redact(url)}, {args.workers} worker(s); "
          f"re-queued {counts['requeued']}, enqueued {counts['enqueued']}", flush=True)
    print(progress(study, spec, started, args.workers), flush=True)
    if spec.on_demand:
        print(plan_line(spec), flush=True)
    run = functools.partial(execute, args, run_fn=run_fn, study=study, storage=storage, url=url, slots=slots,
                            has_gpus=has_gpus, started=started)
    failed = run(spec)
    if failed is None:
        failed, spec = _rounds(args, spec, study, storage, url, run)
    if failed is not None:
        return failed
    return _finish(args, spec, study, started)


def _load(args: argparse.Namespace) -> StudySpec:
    """The study file with --seeds applied; the CLI overrides checked against every cell before any work."""
    spec = load_study(args.study_file)
    if args.seeds:
        try:
            seeds = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
        if spec.on_demand:
            raise ConfigError("--seeds: the study adds seeds on demand; its seeds are seeds_on_demand's "
                              "(order, max_seeds) in the study file")
        spec = dataclasses.replace(spec, seeds=seeds)
    for variant in spec.variants:
        cell_config(spec, variant, spec.seeds[0], None, args.out, tuple(args.overrides))
    return spec


def _rounds(args: argparse.Namespace, spec: StudySpec, study, storage, url: str,
            run: Callable[[StudySpec], int | None]) -> tuple[int | None, StudySpec]:
    """Seeds on demand: while a round ends with every cell done, the plan's next round is enqueued and run.
    Returns (the exit code of a failed round, or None; the spec of the last round)."""
    study_dir, number = Path(args.out) / spec.name, 1
    while spec.on_demand and cells_left(study, spec)[0] == 0:
        export_records(study, args.out, spec)
        after, line = next_cells(spec, study_dir, number)
        print(line, flush=True)
        if after is None:
            break
        spec, number = after, number + 1
        try:
            with study_lock(storage, url, spec.name):
                counts = prepare(study, spec, args.out, tuple(args.overrides))
        except StudyError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2, spec
        print(f"[{spec.name}] round {number}: enqueued {counts['enqueued']}", flush=True)
        failed = run(spec)
        if failed is not None:
            return failed, spec
    return None, spec


def _finish(args: argparse.Namespace, spec: StudySpec, study, started: float) -> int:
    """After the last cell: the records exported, each variant timed (grids), the search's outputs, the runs table
    and the audit. Returns 1 when the audit finds a problem, else 0."""
    study_dir = Path(args.out) / spec.name
    export_records(study, args.out, spec)
    bench_problems = bench_variants(spec, args.out, tuple(args.overrides), log=lambda line: print(line, flush=True))
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
