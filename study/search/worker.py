"""One worker: claim a cell (or, packed, several seeds of one variant), run it with run_one (run_packed) under a
heartbeat, report to Optuna, retry or give up.

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
from study.search.queue import claim, claim_pack, failures, identity, open_study, requeue_lost, trials_by_cell
from study.search.space import StudySpec, cell_config, grid_cells, suggest
from study.search.storage import open_storage, study_lock

HEARTBEAT_S = 15.0
RunFn = Callable[..., RunRecord]
PackFn = Callable[[list[Any]], list[RunRecord]]


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


def run_pack(study: optuna.Study, trials: list[optuna.Trial], spec: StudySpec, url: str, out_dir: str,
             cli: tuple[str, ...], pack_fn: PackFn) -> list[RunRecord | None]:
    """Run claimed cells of one variant as one packed job with pack_fn (run_packed); report each to Optuna."""
    started = [_start(trial, spec, out_dir, cli) for trial in trials]
    beats = [Heartbeat(storage_of(study), trial_id(trial)) for trial in trials]
    records: list[RunRecord | None] = [None] * len(trials)
    error = ""
    try:
        records = list(pack_fn([cfg for cfg, _ in started]))
    except Exception as e:  # noqa: BLE001 - run_packed records its own failures; this is a last resort
        if disk_error(e):
            _give_back(study, trials, spec, url, e)
            raise
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        for beat in beats:
            beat.stop()
    for trial, (_, attrs), record in zip(trials, started, records, strict=True):
        _finish(study, trial, attrs, spec, url, record, error)
    return records


def pack_sizer(spec: StudySpec, out_dir: str, cli: tuple[str, ...]) -> Callable[[str, int], int]:
    """(variant, seed) -> how many cells of that variant a worker claims as one packed job: the cell config's
    run.pack or, where it is 0, the machine's measured choice (study.throughput.packing.auto_pack), settled once
    before any claim (a GPU measures; nothing is measured while the study lock is held) and said once."""
    variant, seed = next(iter(grid_cells(spec)))
    chosen = 1
    if cell_config(spec, variant, seed, {}, out_dir, cli).run.pack == 0:
        from study.throughput.packing import auto_pack

        chosen, why = auto_pack(cell_config(spec, variant, seed, {}, out_dir, cli))
        if why not in _SAID:
            _SAID.add(why)
            print(f"[{spec.name}] {why}", flush=True)

    def size_of(variant: str, seed: int) -> int:
        return cell_config(spec, variant, seed, {}, out_dir, cli).run.pack or chosen

    return size_of


_SAID: set[str] = set()


def work(spec: StudySpec, url: str, out_dir: str, cli: tuple[str, ...], run_fn: RunFn | None = None,
         on_trial: Callable[[], None] | None = None, pack_fn: PackFn | None = None) -> int:
    """Claim and run trials until there is no work left; returns how many this worker ran.

    With run_fn left out, cells run with run_one, and seeds of one variant as packed jobs with run_packed where
    `pack_sizer` says so; a given run_fn (a stand-in, a torchrun job) packs only with a given pack_fn."""
    storage = open_storage(url)
    study = open_study(spec, storage)
    done = 0
    if run_fn is None:
        from study.run import run_one as run_fn  # torch is imported only by workers that train
        from study.run import run_packed

        pack_fn = pack_fn or run_packed
    size_of = pack_sizer(spec, out_dir, cli) if pack_fn is not None and spec.search is None else None
    while trials := (claim_pack(study, spec, url, size_of) if size_of is not None
                     else [t for t in (claim(study, spec, url),) if t is not None]):
        if len(trials) > 1:
            run_pack(study, trials, spec, url, out_dir, cli, pack_fn)
        else:
            run_trial(study, trials[0], spec, url, out_dir, cli, run_fn)
        done += len(trials)
        if on_trial:
            on_trial()
    return done
