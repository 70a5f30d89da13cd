"""A study's cells in an Optuna storage: enqueue once, claim once, re-queue the cells of dead workers.

- A grid cell is (variant, seed). All cells are enqueued once, under the study lock, as WAITING trials; a worker
  claims one by moving it to RUNNING, which the storage grants to exactly one worker. No GridSampler: it repeats
  and skips points under parallel workers and retries. A cell is named by its trial's user attributes, not by
  Optuna parameters (whose categorical choices cannot grow), so a study grows: more seeds or variants enqueue only
  the new cells, and a worker claims only cells of the study file it was given.
- A search (TPE, median pruning) asks new trials under the same lock, so the budget `n_trials` is a total over all
  workers and machines.
- Every claimed trial carries its worker (host:pid) and a heartbeat. Preparing a study re-queues the cells of dead
  workers with the same parameters; they resume from their checkpoint in the cell's stable folder. A cell that
  fails is retried up to `max_retries` times, then reported as failed.
- A cell whose config changed since it ran, or a search space that changed, is refused, not mixed in. Preparing
  checks everything before it writes anything: a refused command leaves the storage as it was.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.config import ConfigError, config_hash
from study.record import RECORD_FILE, read_record, run_dir, run_id
from study.search.optuna_handles import storage_of, trial_id
from study.search.space import StudySpec, cell_config, distributions, grid_cells, trial_variant
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
    """The study in the storage, created if missing (opening an existing one writes nothing)."""
    sampler = make_sampler(spec)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
              if spec.search and spec.search.pruner == "median" else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(storage=storage, study_name=spec.name, sampler=sampler, pruner=pruner)
    except KeyError:
        return optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction,
                                   sampler=sampler, pruner=pruner, load_if_exists=True)


def spec_cells(spec: StudySpec) -> set[str] | None:
    """The cells a grid's study file asks for now; None for a search (every trial it asked is its own)."""
    return {run_id(v, s) for v, s in grid_cells(spec)} if spec.search is None else None


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
        if spec.search is None and variant not in spec.variants:
            continue
        cfg = cell_config(spec, variant, seed, t.user_attrs.get("overrides"), out_dir, cli)
        if config_hash(cfg) != t.user_attrs["config_hash"]:
            raise StudyError(f"{spec.path}: cell {run_id(variant, seed)} ran with another config (hash "
                             f"{t.user_attrs['config_hash']}, now {config_hash(cfg)}); give the study a new "
                             f"name or remove its results and storage to start over")


def check_same_data(spec: StudySpec, trials: list[FrozenTrial], out_dir: str, cli: tuple[str, ...]) -> None:
    """Refuse to continue a study whose finished cells were trained on other data than its cells read now.

    data.root is a location, not part of the config hash: a finished cell's record names the data it saw
    (provenance.data_fingerprint), and the data the cell would read now must give the same fingerprint.
    """
    from study.data.common import DatasetError
    from study.data.fingerprint import data_fingerprint

    now: dict[str, str] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or "variant" not in t.user_attrs:
            continue
        variant, seed = t.user_attrs["variant"], t.user_attrs["seed"]
        if spec.search is None and variant not in spec.variants:
            continue
        path = run_dir(out_dir, spec.name, variant, seed) / RECORD_FILE
        try:
            old = read_record(path).provenance.get("data_fingerprint") if path.exists() else None
        except ValueError:
            continue
        if not old:  # written before records named their data
            continue
        cfg = cell_config(spec, variant, seed, t.user_attrs.get("overrides"), out_dir, cli)
        key = repr((cfg.data, cfg.data.train_split, cfg.data.val_split))
        if key not in now:
            try:
                now[key] = data_fingerprint(cfg.data, (cfg.data.train_split, cfg.data.val_split))
            except DatasetError as e:
                raise StudyError(f"{spec.path}: {e}") from None
        if now[key] != old:
            raise StudyError(f"{spec.path}: cell {run_id(variant, seed)} finished on other data (fingerprint {old}, "
                             f"now {now[key]} at data.root {cfg.data.root or '(built in)'}); point data.root at "
                             f"the data it ran on, or give the study a new name")


def check_space(spec: StudySpec, trials: list[FrozenTrial]) -> None:
    """Refuse to continue a search whose space changed since its trials sampled it (one line)."""
    if spec.search is None:
        return
    now = distributions(spec.search)
    for t in trials:
        for key, dist in t.distributions.items():
            if key not in now:
                raise StudyError(f"{spec.path}: search.space.{key} was removed since trial {t.number} sampled it; "
                                 f"give the study a new name to search another space")
            if dist != now[key]:
                raise StudyError(f"{spec.path}: search.space.{key} changed since trial {t.number} sampled it "
                                 f"({dist} -> {now[key]}); give the study a new name to search another space")
        missing = sorted(set(now) - set(t.distributions)) if t.state == TrialState.COMPLETE else []
        if missing:
            raise StudyError(f"{spec.path}: search.space.{missing[0]} was added since trial {t.number} ran; "
                             f"give the study a new name to search another space")


def cells_to_enqueue(spec: StudySpec, trials: list[FrozenTrial],
                     retry_failed: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(fixed params, identity) of each trial to add: grid cells with no waiting, running or completed trial and
    retries left (or --retry-failed); with --retry-failed, a search's cells that only failed."""
    by_cell = trials_by_cell(trials)
    out = []
    if spec.search is None:
        for variant, seed in grid_cells(spec):
            mine = by_cell.get(run_id(variant, seed), [])
            if any(t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) for t in mine):
                continue
            if failures(mine) <= spec.max_retries or retry_failed:
                out.append(({}, {"cell": run_id(variant, seed), "variant": variant, "seed": seed}))
    elif retry_failed:
        for mine in by_cell.values():
            if mine and all(t.state == TrialState.FAIL for t in mine):
                out.append((mine[-1].params, identity(mine[-1])))
    return out


def prepare(study: optuna.Study, spec: StudySpec, out_dir: str, cli: tuple[str, ...],
            retry_failed: bool = False) -> dict[str, int]:
    """Under the study lock: re-queue trials of dead workers, enqueue grid cells not yet done. Idempotent.

    Checks come first (finished cells unchanged, search space unchanged, every new cell's config valid), so a
    refused command writes nothing."""
    trials = study.get_trials(deepcopy=False)
    check_unchanged(spec, trials, out_dir, cli)
    check_same_data(spec, trials, out_dir, cli)
    check_space(spec, trials)
    new = cells_to_enqueue(spec, trials, retry_failed)
    for _, attrs in new if spec.search is None else ():
        try:
            cell_config(spec, attrs["variant"], attrs["seed"], None, out_dir, cli)
        except ConfigError as e:
            raise StudyError(f"{spec.path}: cell {attrs['cell']}: {e}") from None
    now = time.time()
    lost = [t for t in trials if t.state == TrialState.RUNNING and "cell" in t.user_attrs and not worker_alive(t, now)]
    for t in lost:
        requeue_lost(study, t, "worker lost (killed or unreachable); re-queued")
    for params, attrs in new:
        study.enqueue_trial(params, user_attrs=attrs)
    return {"requeued": len(lost), "enqueued": len(new)}


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
    wanted = spec_cells(spec)
    with study_lock(storage, url, spec.name):
        for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number):
            if wanted is not None and t.user_attrs.get("cell") not in wanted:
                continue  # a cell of another version of the study file (other seeds or variants): left waiting
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


def cells_left(study: optuna.Study | None, spec: StudySpec) -> tuple[int, int]:
    """(cells still to run, cells in the study) from a study's trials (None: not created yet); enqueues nothing."""
    by_cell = trials_by_cell(study.get_trials(deepcopy=False)) if study is not None else {}
    if spec.search is None:
        cells = [run_id(v, s) for v, s in grid_cells(spec)]
        return sum(1 for c in cells if cell_state(by_cell.get(c, []), spec) == "pending"), len(cells)
    total = spec.search.n_trials
    return max(0, total - sum(1 for trials in by_cell.values() if cell_state(trials, spec) != "pending")), total
