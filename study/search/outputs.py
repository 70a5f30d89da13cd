"""What a study has done: the progress line, the exactly-once audit, exported records and search outputs."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from study.atomic import atomic_write_text
from study.record import RECORD_FILE, RunRecord, read_record, run_dir, run_id, write_record
from study.search.queue import cell_state, spec_cells, trials_by_cell
from study.search.space import StudySpec, grid_cells


def progress(study: optuna.Study, spec: StudySpec, started: float, workers: int) -> str:
    """One line: done / total, running, failed, pruned, ETA, best so far."""
    trials = study.get_trials(deepcopy=False)
    wanted = spec_cells(spec)
    by_cell = {c: ts for c, ts in trials_by_cell(trials).items() if wanted is None or c in wanted}
    total = len(grid_cells(spec)) if spec.search is None else spec.search.n_trials
    states = Counter(cell_state(ts, spec) for ts in by_cell.values())
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


def audit(study: optuna.Study, spec: StudySpec) -> list[str]:
    """Problems with the study's coverage: every cell must have completed (or been pruned/failed) exactly once."""
    by_cell = trials_by_cell(study.get_trials(deepcopy=False))
    expected = [run_id(v, s) for v, s in grid_cells(spec)] if spec.search is None else sorted(by_cell)
    problems = []
    for cell in expected:
        trials = by_cell.get(cell, [])
        completes = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        if completes > 1:
            problems.append(f"{cell}: completed {completes} times")
        state = cell_state(trials, spec)
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
                read_record(path)
                continue  # a readable record is kept as it is
            except ValueError:
                pass  # unreadable: rewritten from the storage
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
