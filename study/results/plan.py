"""Planning before running: what a study's claim rows can detect at its planned seeds, from a named earlier study's
noise, and how many seeds its smallest difference of interest m would need.

The rows are the pairs `study.results.claims.find_pairs` would form from the variants' resolved configs; the family
is all of them (Holm's first threshold alpha / rows is the level a row is guaranteed). A row's noise is the sd of
the paired differences of the same pair in the earlier study, else the median over that study's rows of the same
claim, else the median over all its rows (each planned row says which). Power is the paired t-test's
(study.results.power), as the report computes it after the fact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from study.results.axes import RECIPE_COLUMN, axes_of, recipe_hash
from study.results.claims import CLAIMS, ClaimRow, find_pairs
from study.results.power import POWER, detectable_effect, seeds_for
from study.results.stats import ALPHA


@dataclass(frozen=True)
class PlannedRow:
    claim: str
    better: str
    worse: str
    sd: float  # the noise this row is planned with (points)
    noise: str  # where it came from: "same pair", "same claim (median of k rows)", "every row (median of k)"
    detectable: float  # the smallest difference found with 80% power at the planned seeds and alpha / rows
    seeds_for_m: float  # the seeds that find a difference of m with 80% power at the same level (nan without m)


def planned_table(configs: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per variant (its axis columns and recipe hash), as the results table would have them."""
    return pd.DataFrame([{"variant": v, **axes_of(c), RECIPE_COLUMN: recipe_hash(c)} for v, c in configs.items()])


def noise_for(row: tuple[str, str, str], earlier: Sequence[ClaimRow]) -> tuple[float, str]:
    """(sd, where from) for a (claim, better, worse) row from the earlier study's rows; nan when it has none."""
    usable = [c for c in earlier if math.isfinite(c.sd) and c.sd > 0]
    same = [c.sd for c in usable if c.key == row]
    if same:
        return same[0], "same pair"
    claim = [c.sd for c in usable if c.claim == row[0]]
    if claim:
        return float(np.median(claim)), f"same claim (median of {len(claim)} rows)"
    if usable:
        return float(np.median([c.sd for c in usable])), f"every row (median of {len(usable)})"
    return math.nan, "no noise estimate"


def plan_rows(configs: Mapping[str, dict[str, Any]], seeds: int, earlier: Sequence[ClaimRow],
              margin: float | None, alpha: float = ALPHA, power: float = POWER) -> list[PlannedRow]:
    """The planned claim rows of a study whose variants resolve to `configs`, at `seeds` seeds."""
    table = planned_table(configs)
    found = [(c.name, b, w) for c in CLAIMS for b, w in find_pairs(table, c)]
    level = alpha / max(len(found), 1)
    effect = detectable_effect(seeds, level, power)
    rows = []
    for key in found:
        sd, source = noise_for(key, earlier)
        need = seeds_for(margin / sd, level, power) if margin and math.isfinite(sd) and sd > 0 else math.nan
        rows.append(PlannedRow(*key, sd=sd, noise=source, detectable=effect * sd, seeds_for_m=need))
    return rows


def plan_lines(name: str, rows: Sequence[PlannedRow], seeds: int, margin: float | None, noise_study: str,
               alpha: float = ALPHA) -> list[str]:
    """The plan in words and a table: per row, the detectable Δ and the seeds m needs; a closing line that says
    whether the planned seeds can detect m."""
    if not rows:
        return [f"[{name}] plan: no pair of variants isolates one of the paper's claims"]
    level = alpha / len(rows)
    head = (f"[{name}] plan: {len(rows)} claim rows at {seeds} seeds each, Holm's first threshold {level:.3g}, "
            f"80% power; noise from {noise_study}; m = {margin:g} points" if margin else
            f"[{name}] plan: {len(rows)} claim rows at {seeds} seeds each, Holm's first threshold {level:.3g}, 80% "
            f"power; noise from {noise_study}; no smallest difference of interest declared (equivalence_margin)")
    lines = [head, f"  {'claim':44} {'better vs worse':32} {'sd':>6} {'detectable Δ':>13} {'seeds for m':>12}  noise"]
    for r in rows:
        need = "" if math.isnan(r.seeds_for_m) else "> 10000" if math.isinf(r.seeds_for_m) else f"{r.seeds_for_m:.0f}"
        lines.append(f"  {r.claim[:44]:44} {(r.better + ' vs ' + r.worse)[:32]:32} {r.sd:6.2f} {r.detectable:13.2f} "
                     f"{need:>12}  {r.noise}")
    if margin:
        over = [r for r in rows if not r.detectable <= margin]
        lines.append(f"[{name}] plan: every row can detect m = {margin:g} at {seeds} seeds" if not over else
                     f"[{name}] plan: {len(over)} of {len(rows)} rows cannot detect m = {margin:g} at {seeds} seeds "
                     f"(detectable Δ up to {max(r.detectable for r in over):.2f}; the largest need is "
                     f"{_most(over)} seeds): their inconclusive verdicts would say little about m")
    return lines


def _most(rows: Sequence[PlannedRow]) -> str:
    need = [r.seeds_for_m for r in rows if math.isfinite(r.seeds_for_m) or math.isinf(r.seeds_for_m)]
    return "unknown" if not need else "more than 10000" if math.isinf(max(need)) else f"{max(need):.0f}"
