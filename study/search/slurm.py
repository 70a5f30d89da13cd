"""`--executor slurm`: worker jobs submitted with submitit that join the same study storage (PostgreSQL).

Each job takes one node's share of GPUs (`--slurm-gpus-per-job G`) and runs the local plan there: one worker per
GPU (or K per GPU, or one torchrun job per cell over `--gpus-per-cell` GPUs), each pinned with
CUDA_VISIBLE_DEVICES, exactly as `python -m study sweep` does on a workstation. Every worker claims cells from
the shared storage, so jobs may start late, die (their cells are re-queued on the next run) or be added later.

submitit's local executor (`--slurm-cluster local`, used by the tests) gives every job the same first GPUs unless
`visible_gpus` is set per job (the trap of hydra #2757): `local_job_gpus` hands each job its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from study.search.placement import PlacementError, Slot, gpu_count, local_plan, plan_workers
from study.search.supervise import STORAGE_ENV, local_workers, start


def check_storage(url: str | None) -> None:
    """SLURM jobs on other nodes can only share a database (one line otherwise)."""
    if not url or url.startswith("journal:"):
        raise PlacementError("--executor slurm: jobs on other nodes share the study through a database; give "
                             "--storage postgresql://USER@HOST/DB")


def node_slots(args: argparse.Namespace, cpu_count: int | None = None) -> list[Slot]:
    """The plan on one job's node (for --dry-run): its G GPUs as the job will see them."""
    gpus = list(range(args.slurm_gpus_per_job))
    return plan_workers(gpus, args.workers_per_gpu, None, args.gpus_per_cell, cpu_count or os.cpu_count() or 1)


def local_job_gpus(job: int, per_job: int, available: int) -> tuple[int, ...]:
    """The GPUs of local job `job` (submitit's local executor): disjoint blocks of `per_job`."""
    if per_job == 0 or available == 0:
        return ()
    first = job * per_job
    if first + per_job > available:
        raise PlacementError(f"--slurm-cluster local: job {job} needs GPUs {first}-{first + per_job - 1}, this "
                             f"machine has {available}")
    return tuple(range(first, first + per_job))


def run_node(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """The body of one job: plan the workers of this node as the sweep command does, run them, wait.

    `url` is the storage URL without its password (what submitit pickles into results/<study>/slurm/); the job's
    environment, exported by the submitting shell, carries the whole URL in $STUDY_STORAGE_URL.
    """
    url = os.environ.get(STORAGE_ENV) or url
    slots, _ = local_plan(args)
    specs = local_workers(args, url, slots)
    for w in specs:
        print(f"starting {w.label}", flush=True)
    procs = [start(w) for w in specs]
    codes = [p.wait() for p in procs]
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "workers": [w.label for w in specs],
            "exit_codes": codes}


def without_password(url: str) -> str:
    """The URL with its password replaced by ***, for anything written to disk."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a database URL: nothing to hide
        return url


def submit(args: argparse.Namespace, url: str, name: str, folder: Path) -> list:
    """Submit `--slurm-jobs` worker jobs; returns submitit jobs."""
    try:
        import submitit
    except ImportError:
        raise PlacementError("--executor slurm needs submitit: pip install 'pspnet-study[slurm]'") from None
    cluster = args.slurm_cluster or "slurm"
    g = args.slurm_gpus_per_job
    local = cluster == "local"
    available = gpu_count() if local else g
    try:
        if local:  # LocalExecutor itself: AutoExecutor does not pass visible_gpus through
            executor = submitit.LocalExecutor(folder=str(folder))
            params: dict[str, Any] = {"timeout_min": args.slurm_time, "tasks_per_node": 1,
                                      "gpus_per_node": g if available else 0}
        else:
            executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
            params = {"name": f"study-{name}", "timeout_min": args.slurm_time, "nodes": 1, "tasks_per_node": 1,
                      "gpus_per_node": g}
            if args.slurm_partition:
                params["slurm_partition"] = args.slurm_partition
            if args.slurm_cpus_per_job:
                params["cpus_per_task"] = args.slurm_cpus_per_job
        executor.update_parameters(**params)
    except Exception as e:  # noqa: BLE001 - submitit raises plain errors for a missing sbatch and the like
        raise PlacementError(f"--executor slurm: {str(e).strip().splitlines()[0] if str(e).strip() else e}") \
            from None
    # on the node: every GPU the job was given (K per GPU; on a machine without GPUs, one CPU worker)
    worker_args = argparse.Namespace(**{**vars(args), "executor": "local", "dry_run": False, "workers": None,
                                        "gpus": None, "workers_per_gpu": args.workers_per_gpu if available else 1,
                                        "storage": None})
    # submitit pickles the job's arguments to disk: they get the URL without its password, and the jobs the whole
    # URL through their environment (sbatch exports the submitting environment; the local executor inherits it)
    os.environ[STORAGE_ENV] = url
    public = without_password(url)
    jobs = []
    for j in range(args.slurm_jobs):
        if local:  # else every local job sees GPUs 0..g-1
            executor.update_parameters(visible_gpus=local_job_gpus(j, g, available))
        try:
            jobs.append(executor.submit(run_node, worker_args, public))
        except Exception as e:  # noqa: BLE001 - e.g. sbatch refused the job: say why in one line
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PlacementError(f"--executor slurm: submitting job {j} failed: {reason}") from None
    return jobs


def submit_and_wait(args: argparse.Namespace, url: str, name: str, study_dir: Path) -> int:
    """Submit the jobs, report their ids, wait for them; returns how many failed."""
    jobs = submit(args, url, name, study_dir / "slurm")
    print(f"[{name}] submitted {len(jobs)} job(s): {', '.join(str(j.job_id) for j in jobs)} "
          f"(logs in {study_dir / 'slurm'})", flush=True)
    failed = 0
    for job in jobs:
        while not job.done():
            time.sleep(2.0)
        try:
            result = job.result()
            print(f"[{name}] job {job.job_id} ({result['cuda_visible_devices'] or 'cpu'}): "
                  f"{len(result['workers'])} worker(s), exit codes {result['exit_codes']}", flush=True)
            failed += any(result["exit_codes"])
        except Exception as e:  # noqa: BLE001 - a lost job's cells are re-queued by the next run
            print(f"[{name}] job {job.job_id} failed: {str(e).strip().splitlines()[-1:]}", file=sys.stderr)
            failed += 1
    return failed
