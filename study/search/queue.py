"""A study's cells in an Optuna storage: enqueue once, claim once, re-queue the cells of dead workers.

- A grid cell is (variant, seed). All cells are enqueued once, under the study lock, as WAITING trials; a worker
  claims one by moving it to RUNNING, which the storage grants to exactly one worker. No GridSampler: it repeats
  and skips points under parallel workers and retries.
- A search (TPE, median pruning) asks new trials under the same lock, so the budget `n_trials` is a total over all
  workers and machines.
- Every claimed trial carries its worker (host:pid) and a heartbeat. Preparing a study re-queues the cells of dead
  workers with the same parameters; they resume from their checkpoint in the cell's stable folder. A cell that
  fails is retried up to `max_retries` times, then reported as failed.
- A cell whose config changed since it ran is refused, not mixed in.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.config import config_hash
from study.record import run_id
from study.search.optuna_handles import storage_of, trial_id
from study.search.space import StudySpec, cell_config, grid_cells, trial_variant
from study.search.storage import study_lock

STALE_S = 120.0  # a RUNNING trial of another host with no heartbeat for this long is taken as dead


class StudyError(RuntimeError):
    """A study cannot run as asked (changed config, unreachable storage...)."""


def make_sampler(spec: StudySpec, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded by (sampler seed, trials created so far).

    Every worker process builds its own sampler; seeded alike, two workers would ask for the same points (TPE's
    random start-up trials came out in identical pairs). A new trial is asked under the study lock with a sampler
    seeded by the number of trials before it: distinct points, the same sequence for any number of workers.
    """
    seed = (spec.search.sampler_seed if spec.search else 0) * 1_000_003 + trials_so_far
    if spec.search and spec.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    sampler = make_sampler(spec)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
              if spec.search and spec.search.pruner == "median" else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction,
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def worker_alive(t: FrozenTrial, now: float) -> bool:
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


def check_unchanged(spec: StudySpec, trials: list[FrozenTrial], out_dir: str, cli: tuple[str, ...]) -> None:
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
    trials = study.get_trials(deepcopy=False)
    check_unchanged(spec, trials, out_dir, cli)
    now = time.time()
    requeued = 0
    for t in trials:
        if t.state == TrialState.RUNNING and "cell" in t.user_attrs and not worker_alive(t, now):
            requeue_lost(study, t, "worker lost (killed or unreachable); re-queued")
            requeued += 1
    trials = study.get_trials(deepcopy=False)
    enqueued = 0
    if spec.kind == "grid":
        by_cell = trials_by_cell(trials)
        for variant, seed in grid_cells(spec):
            mine = by_cell.get(run_id(variant, seed), [])
            if any(t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) for t in mine):
                continue
            if failures(mine) <= spec.max_retries or retry_failed:
                study.enqueue_trial({"variant": variant, "seed": seed},
                                    user_attrs={"cell": run_id(variant, seed), "variant": variant, "seed": seed})
                enqueued += 1
    elif retry_failed:
        for mine in trials_by_cell(trials).values():
            if mine and all(t.state == TrialState.FAIL for t in mine):
                study.enqueue_trial(mine[-1].params, user_attrs=identity(mine[-1]))
                enqueued += 1
    return {"requeued": requeued, "enqueued": enqueued}


def requeue_lost(study: optuna.Study, t: FrozenTrial, why: str) -> None:
    """Under the study lock: end a RUNNING trial as lost (not the cell's fault, not a failure) and queue its cell
    again with the same parameters; it resumes from its checkpoint."""
    storage = storage_of(study)
    storage.set_trial_user_attr(trial_id(t), "lost", True)
    storage.set_trial_user_attr(trial_id(t), "error", why)
    storage.set_trial_state_values(trial_id(t), TrialState.FAIL)
    study.enqueue_trial(t.params or t.system_attrs.get("fixed_params", {}), user_attrs=identity(t))


def failures(trials: list[FrozenTrial]) -> int:
    """How often a cell failed on its own (trials re-queued because their worker died do not count)."""
    return sum(1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("lost"))


def identity(t: FrozenTrial) -> dict[str, Any]:
    return {k: t.user_attrs[k] for k in ("cell", "variant", "seed") if k in t.user_attrs}


def trials_by_cell(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    out: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if "cell" in t.user_attrs:
            out.setdefault(t.user_attrs["cell"], []).append(t)
    return out


def claim(study: optuna.Study, spec: StudySpec, url: str) -> optuna.Trial | None:
    """The next WAITING trial, or (searches) a new one within the total budget; None when there is no work."""
    storage = storage_of(study)
    with study_lock(storage, url, spec.name):
        for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number):
            # the worker is named before the trial turns RUNNING: a worker killed in between leaves a WAITING
            # trial, never a RUNNING one that no one can tell is orphaned
            storage.set_trial_user_attr(trial_id(t), "worker", f"{socket.gethostname()}:{os.getpid()}")
            if storage.set_trial_state_values(trial_id(t), TrialState.RUNNING):
                return optuna.Trial(study, trial_id(t))
        if spec.search is None:
            return None
        cells = {t.user_attrs.get("cell") for t in study.get_trials(deepcopy=False) if "cell" in t.user_attrs}
        if len(cells) >= spec.search.n_trials:
            return None
        study.sampler = make_sampler(spec, len(study.get_trials(deepcopy=False)))
        trial = study.ask()
        variant, seed = trial_variant(trial.number), spec.seeds[0]
        for key, value in {"cell": run_id(variant, seed), "variant": variant, "seed": seed}.items():
            trial.set_user_attr(key, value)
        return trial




def cell_state(trials: list[FrozenTrial], spec: StudySpec) -> str:
    states = [t.state for t in trials]
    if TrialState.COMPLETE in states:
        return "completed"
    if TrialState.PRUNED in states:
        return "pruned"
    if TrialState.RUNNING in states or TrialState.WAITING in states:
        return "pending"
    return "failed" if failures(trials) > spec.max_retries else "pending"
