"""One worker: claim a cell, run it with run_one under a heartbeat, report to Optuna, retry or give up.

Each finished trial stores its run record in the storage too, so with a shared database every machine can write
the complete results table.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from study.atomic import disk_error
from study.config import config_hash
from study.record import RunRecord
from study.search.optuna_handles import storage_of, trial_id
from study.search.queue import claim, failures, identity, open_study, requeue_lost, trials_by_cell
from study.search.space import StudySpec, cell_config, suggest
from study.search.storage import open_storage, study_lock

HEARTBEAT_S = 15.0
RunFn = Callable[..., RunRecord]


class Heartbeat:
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


def _start(trial: optuna.Trial, spec: StudySpec, out_dir: str, cli: tuple[str, ...]):
    """The claimed trial's cell config, with its overrides, config hash and worker stored on the trial."""
    attrs = storage_of(trial.study).get_trial(trial_id(trial)).user_attrs
    # a grid cell is named by its user attributes only: Optuna's categorical choices could not grow
    params = suggest(trial, spec.search) if spec.search else {}
    cfg = cell_config(spec, attrs["variant"], attrs["seed"], params, out_dir, cli)
    trial.set_user_attr("overrides", params)
    trial.set_user_attr("config_hash", config_hash(cfg))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    return cfg, attrs


def _finish(study: optuna.Study, trial: optuna.Trial, attrs: dict[str, Any], spec: StudySpec, url: str,
            record: RunRecord | None, error: str) -> None:
    """Report a run to Optuna (completed, pruned or failed); a failed cell is queued again while it has retries."""
    storage = storage_of(study)
    tid = trial_id(trial)
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
            mine = trials_by_cell(study.get_trials(deepcopy=False))[attrs["cell"]]
            if failures(mine) <= spec.max_retries:
                study.enqueue_trial(trial.params, user_attrs=identity(storage.get_trial(tid)))


def _give_back(study: optuna.Study, trials: list[optuna.Trial], spec: StudySpec, url: str, e: OSError) -> None:
    """The results folder, not the cells, failed: the cells go back to the queue (a re-run resumes them)."""
    storage = storage_of(study)
    with contextlib.suppress(Exception), study_lock(storage, url, spec.name):
        for trial in trials:
            requeue_lost(study, storage.get_trial(trial_id(trial)), f"results not writable ({e.strerror}); re-queued")


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: StudySpec, url: str, out_dir: str,
              cli: tuple[str, ...], run_fn: RunFn) -> RunRecord | None:
    """Run one claimed trial with run_fn (run_one), report to Optuna, retry or give up on failure."""
    cfg, attrs = _start(trial, spec, out_dir, cli)

    def on_eval(step: int, metrics: dict[str, Any]) -> bool:
        value = metrics.get(spec.metric)
        if value is None or not math.isfinite(value):
            return False
        trial.report(float(value), step)
        return spec.search is not None and trial.should_prune()

    beat = Heartbeat(storage_of(study), trial_id(trial))
    record, error = None, ""
    try:
        record = run_fn(cfg, on_eval=on_eval)
    except Exception as e:  # noqa: BLE001 - run_one records its own failures; this is a last resort
        if disk_error(e):
            _give_back(study, [trial], spec, url, e)
            raise
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        beat.stop()
    _finish(study, trial, attrs, spec, url, record, error)
    return record


def work(spec: StudySpec, url: str, out_dir: str, cli: tuple[str, ...], run_fn: RunFn | None = None,
         on_trial: Callable[[], None] | None = None) -> int:
    """Claim and run trials, one at a time, until there is no work left; returns how many this worker ran."""
    storage = open_storage(url)
    study = open_study(spec, storage)
    done = 0
    while (trial := claim(study, spec, url)) is not None:
        if run_fn is None:
            from study.run import run_one as run_fn  # torch is imported only by workers that train
        run_trial(study, trial, spec, url, out_dir, cli, run_fn)
        done += 1
        if on_trial:
            on_trial()
    return done
