"""Seeds on demand for a results table: which seeds each variant should run next (study.results.sequential).

The sweep calls `next_round(table, plan)` after every round: it runs the seeds returned and asks again, and stops
when the answer is empty (every claim decided, or at the plan's last look). Re-running the same command resumes:
the answer depends only on the table.
"""

from __future__ import annotations

import pandas as pd

from study.results.claims import ClaimRow, judge_claims
from study.results.sequential import DECIDED, SequentialPlan
from study.results.stats import ALPHA


def first_round(variants: list[str], plan: SequentialPlan) -> dict[str, list[int]]:
    """Every variant's seeds of the first look."""
    return {v: list(plan.seeds[: plan.looks[0]]) for v in variants}


def next_round(table: pd.DataFrame, plan: SequentialPlan, metric: str = "miou",
               alpha: float = ALPHA) -> dict[str, list[int]]:
    """{variant: seeds to run next}, only for the variants of claims not yet decided that have looks left: every
    seed of the claim's next look that the variant has not run (a run that failed or did not train counts as run).
    Empty: nothing more to run."""
    return plan_round(table, plan, metric, alpha)[1]


def plan_round(table: pd.DataFrame, plan: SequentialPlan, metric: str = "miou",
               alpha: float = ALPHA) -> tuple[list[ClaimRow], dict[str, list[int]]]:
    """(the claim rows not yet decided, {variant: seeds to run next} as `next_round`): what a round reports."""
    ran = {(str(v), int(s)) for v, s in zip(table["variant"], table["seed"], strict=True)}
    todo: dict[str, set[int]] = {}
    open_rows = []
    for row in judge_claims(table, metric=metric, alpha=alpha, plan=plan):
        if row.verdict in DECIDED:
            continue
        open_rows.append(row)
        if row.looks >= len(plan.looks):
            continue
        wanted = plan.seeds[: plan.looks[row.looks]]
        for v in (row.better, row.worse):
            todo.setdefault(v, set()).update(s for s in wanted if (v, s) not in ran)
    return open_rows, {v: sorted(seeds) for v, seeds in todo.items() if seeds}
