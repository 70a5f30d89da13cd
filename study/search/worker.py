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


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: StudySpec, url: str, out_dir: str,
              cli: tuple[str, ...], run_fn: RunFn) -> RunRecord | None:
    """Run one claimed trial with run_fn (run_one), report to Optuna, retry or give up on failure."""
    storage = storage_of(study)
    tid = trial_id(trial)
    attrs = storage.get_trial(tid).user_attrs
    variant, seed = attrs["variant"], attrs["seed"]
    # a grid cell is named by its user attributes only: Optuna's categorical choices could not grow
    params = suggest(trial, spec.search) if spec.search else {}
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

    beat = Heartbeat(storage, tid)
    try:
        record = run_fn(cfg, on_eval=on_eval)
    except Exception as e:  # noqa: BLE001 - run_one records its own failures; this is a last resort
        if disk_error(e):  # the results folder, not the cell: give the cell back and stop (re-run resumes)
            with contextlib.suppress(Exception), study_lock(storage, url, spec.name):
                requeue_lost(study, storage.get_trial(tid), f"results not writable ({e.strerror}); re-queued")
            raise
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
            mine = trials_by_cell(study.get_trials(deepcopy=False))[attrs["cell"]]
            if failures(mine) <= spec.max_retries:
                study.enqueue_trial(trial.params, user_attrs=identity(storage.get_trial(tid)))
    return record


def work(spec: StudySpec, url: str, out_dir: str, cli: tuple[str, ...], run_fn: RunFn | None = None,
         on_trial: Callable[[], None] | None = None) -> int:
    """Claim and run trials until there is no work left; returns how many this worker ran."""
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
