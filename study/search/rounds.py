"""Seeds on demand in a sweep: the cells of each round, decided from the results table of the rounds before.

The first round is the plan's first look for every variant. After each round the sweep writes the results table
and asks study.results.on_demand which claims are still undecided and which seeds to add to which variants; the
next round is those cells only, enqueued like any grid cell (once, claimed once). It stops when the answer is
empty: every claim decided, or at the plan's last look (the plan's max_seeds). Only the table and the storage
decide, so re-running the command resumes: finished rounds run nothing and the next one is asked again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna

from study.record import seeds_text
from study.search.queue import StudyError
from study.search.space import StudySpec, grid_cells, with_cells

PLAN_ATTR = "seeds_on_demand"  # the study's plan, kept in the storage by its first sweep


def check_plan(study: optuna.Study, spec: StudySpec) -> None:
    """Refuse a plan that differs from the one the study started with (its guarantee needs the plan fixed before
    the data); writes nothing."""
    kept = study.user_attrs.get(PLAN_ATTR)
    if kept is not None and kept != spec.on_demand.to_dict():
        raise StudyError(f"{spec.path}: seeds_on_demand changed since the study started ({kept} -> "
                         f"{spec.on_demand.to_dict()}); its verdicts hold for a plan fixed in advance: give the "
                         f"study a new name to use another plan")


def keep_plan(study: optuna.Study, spec: StudySpec) -> None:
    """Under the study lock, after the checks: store the plan the study starts with."""
    if PLAN_ATTR not in study.user_attrs:
        study.set_user_attr(PLAN_ATTR, spec.on_demand.to_dict())


def start_cells(study: optuna.Study | None, spec: StudySpec) -> StudySpec:
    """The spec whose cells are the first round and every cell of the plan the storage already holds (earlier
    rounds, or a round cut short)."""
    from study.results.on_demand import first_round  # the statistics (scipy) load only for such a study

    plan = spec.on_demand
    cells = {(v, s) for v, seeds in first_round(list(spec.variants), plan).items() for s in seeds}
    if study is not None:
        cells |= {(t.user_attrs["variant"], int(t.user_attrs["seed"])) for t in study.get_trials(deepcopy=False)
                  if "variant" in t.user_attrs and "seed" in t.user_attrs}
    return with_cells(spec, cells)  # only the study file's variants and the plan's seeds


def next_cells(spec: StudySpec, study_dir: Path, number: int) -> tuple[StudySpec | None, str]:
    """The spec of the round after round `number` (None: no more rounds) and the line that says why."""
    from study.results.on_demand import plan_round
    from study.results.table import ResultsError, write_table

    head = f"[{spec.name}] round {number}"
    try:
        table = write_table(study_dir)
    except ResultsError as e:  # no record at all: nothing to decide from
        return None, f"{head}: no results to decide from ({e})"
    table = table[table["variant"].isin(list(spec.variants))]
    undecided, todo = plan_round(table, spec.on_demand, metric=spec.metric)
    new = {(v, s) for v, seeds in todo.items() for s in seeds} - set(spec.cells)
    claims = "; ".join(f"{r.claim} ({r.better} vs {r.worse}, look {r.looks} of {r.planned_looks})" for r in undecided)
    said = f"{len(undecided)} claim row(s) undecided: {claims}" if undecided else "every claim row decided"
    if not new:
        why = ("at the last look" if undecided else "done") if not todo else \
            "the seeds it needs were asked already and did not finish: see the audit"
        return None, f"{head}: {said}; no seeds added ({why})"
    added = ", ".join(f"{v} +seeds {seeds_text([s for w, s in sorted(new) if w == v])}"
                      for v in spec.variants if any(w == v for w, _ in new))
    return with_cells(spec, set(spec.cells) | new), f"{head}: {said}; next round adds {added}"


def plan_line(spec: StudySpec) -> str:
    """One line: the plan's looks and its seeds."""
    plan = spec.on_demand
    every = grid_cells(replace(spec, cells=()))
    return (f"[{spec.name}] seeds on demand: looks at {', '.join(map(str, plan.looks))} seeds (alpha spent "
            f"{plan.spend}), seeds {seeds_text(list(plan.seeds))}; at most {len(every)} cells, "
            f"{len(spec.cells)} asked so far")
