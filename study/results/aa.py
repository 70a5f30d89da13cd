"""A/A: how often the rule that judges the paper's claims decides between two variants that are the same model.

A study's `aa: {a, b, seeds_per_group}` names two variants that compute the same network, b a twin of a
(`run.twin`: its own draw of the pyramid and heads and so of the dropout masks, the seed's backbone draw, data order
and augmentation kept, as two variants of one seed differ). Their shared seeds, in order, are cut into disjoint
groups of `seeds_per_group`; each group is one A/A comparison "a beats b", judged by exactly the code that judges a
claim row (study.results.stats.decide on the paired differences of every completed run, the rule's interval,
and "equivalent within ±m" for an inconclusive row inside the study's equivalence margin). Each comparison is
its own Holm family of one row, the most liberal family the rule forms: in a study of m rows Holm tests every row
at alpha/m to alpha, so a study's per-row false-verdict rate is at most the one measured here.
A false verdict is "supported" or "contradicted" (the two are the same model); its rate comes with an exact
(Clopper-Pearson) 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from study.results.claims import equivalence
from study.results.controls import seed_values
from study.results.stats import ALPHA, MIN_SEEDS, decide

FALSE = ("supported", "contradicted")


def parse_aa(data: Any, variants: Any = None, where: str = "aa") -> dict[str, Any]:
    """{a, b, seeds_per_group} checked (a one-line ValueError names the field); a and b among `variants` if given."""
    if not isinstance(data, dict) or set(data) != {"a", "b", "seeds_per_group"}:
        raise ValueError(f"{where}: expected {{a, b, seeds_per_group}}")
    if not all(isinstance(data[k], str) and data[k] for k in ("a", "b")) or data["a"] == data["b"]:
        raise ValueError(f"{where}: a and b must name two different variants")
    n = data["seeds_per_group"]
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_SEEDS:
        raise ValueError(f"{where}: seeds_per_group must be an integer >= {MIN_SEEDS} (the rule's fewest seeds)")
    for key in ("a", "b"):
        if variants is not None and data[key] not in variants:
            raise ValueError(f"{where}: {key} names variant {data[key]!r}, which the study does not have")
    return dict(data)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of k successes in n trials (nan without trials)."""
    if n == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def judge_aa(df: pd.DataFrame, aa: dict[str, Any], *, margin: float | None = None, alpha: float = ALPHA,
             metric: str = "miou", planned: Sequence[int] = ()) -> dict[str, Any]:
    """The A/A comparisons of a study: one row per group of seeds (verdict, Δ, interval), the false-verdict
    count and rate with its 95% interval, and the seeds left over (fewer than a group).

    With `planned` (the study file's seeds, in order) the groups are fixed before any run: consecutive slices of
    that list, each judged once all its seeds have both runs and otherwise listed as waiting, so a missing run
    never regroups the seeds after it. Seeds both variants completed outside the plan (or without one) follow, in
    order."""
    a, b, size = aa["a"], aa["b"], aa["seeds_per_group"]
    va, vb = seed_values(df, a, metric), seed_values(df, b, metric)
    seeds = [*planned, *sorted(set(va) & set(vb) - set(planned))]  # seeds run beyond the plan come after it
    cut = [seeds[i: i + size] for i in range(0, len(seeds) - size + 1, size)]
    groups = [g for g in cut if all(s in va and s in vb for s in g)]
    waiting = [g for g in cut if g not in groups]
    rows = []
    for group in groups:
        y = np.array([[va[s] for s in group], [vb[s] for s in group]])
        (d,) = decide(y, [(0, 1)], alpha)
        verdict = equivalence(d["verdict"], d["ci_low"], d["ci_high"], margin)
        rows.append({"seeds": group, "diff": d["diff"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                     "confidence": d["confidence"], "p_value": d["p_value"], "verdict": verdict,
                     "false": verdict in FALSE})
    k = sum(r["false"] for r in rows)
    lo, hi = clopper_pearson(k, len(rows))
    return {"a": a, "b": b, "seeds_per_group": size, "groups": rows, "false": k, "n": len(rows),
            "rate": k / len(rows) if rows else math.nan, "rate_low": lo, "rate_high": hi, "alpha": alpha,
            "margin": margin, "leftover": seeds[len(cut) * size:], "waiting": waiting, "planned": len(cut),
            "equivalent": sum(r["verdict"].startswith("equivalent") for r in rows)}
