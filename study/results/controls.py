"""The probe's controls: what the harness concludes on data whose answer the construction fixes.

A controls study (`kind: controls` in its study file) lists its comparisons as data: "a vs b", two of its variants
trained on the same control data (`data.probe_kind`, study.data.synthetic), with the relation the construction
implies for the paired seed differences Δ = a - b (mIoU points) and a margin M below which a difference does not
matter:
- better: a beats b (one-sided t-test of Δ <= 0);
- worse: b beats a, so the claim "a beats b" should come out contradicted (one-sided t-test of Δ >= 0);
- non-inferior: a is at least as good as b up to M (one-sided test of Δ <= -M);
- equivalent: |Δ| < M (TOST: both one-sided tests of Δ <= -M and Δ >= M).
A non-significant p is never read as "no difference". Every test is one-sided at alpha/k (Bonferroni over the k
comparisons the study holds), so each decision reads off one two-sided (1 - 2 alpha/k) t-interval [lo, hi].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from study.manifest import EXPECTATIONS, Comparison
from study.results.claims import equivalence, size_reading
from study.results.stats import MIN_SEEDS, Verdict
from study.results.table import ResultsError, trained_mask

ALPHA = 0.05  # family-wise, over the study's control comparisons
def _p_above(mean: float, se: float, df: int, c: float) -> float:
    """One-sided p of H0: Δ <= c (small when Δ is shown above c)."""
    if se == 0:
        return 0.0 if mean > c else 1.0
    return float(stats.t.sf((mean - c) / se, df))


def _p_below(mean: float, se: float, df: int, c: float) -> float:
    """One-sided p of H0: Δ >= c (small when Δ is shown below c)."""
    if se == 0:
        return 0.0 if mean < c else 1.0
    return float(stats.t.cdf((mean - c) / se, df))


def paired_tests(diffs: Sequence[float], *, margin: float, alpha: float) -> dict[str, float]:
    """Mean, the two-sided (1 - 2 alpha) t-interval and the one-sided p-values of paired differences."""
    d = np.asarray([x for x in diffs if math.isfinite(x)], dtype=float)
    n = len(d)
    nan = math.nan
    out = {"n": n, "diff": float(d.mean()) if n else nan, "ci_low": nan, "ci_high": nan, "p_better": nan,
           "p_worse": nan, "p_noninferior": nan, "p_equivalent": nan}
    if n < 2:
        return out
    mean, df = float(d.mean()), n - 1
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(1 - alpha, df)) * se
    out.update(ci_low=mean - half, ci_high=mean + half, p_better=_p_above(mean, se, df, 0.0),
               p_worse=_p_below(mean, se, df, 0.0), p_noninferior=_p_above(mean, se, df, -margin))
    out["p_equivalent"] = max(out["p_noninferior"], _p_below(mean, se, df, margin))  # TOST
    return out


def concluded(lo: float, hi: float, margin: float) -> str:
    """What an interval [lo, hi] of Δ = a - b says against ±margin, in the words a claim row's size reading uses
    (study.results.claims.size_reading); "undecided" where it excludes none of -m, 0, +m."""
    if math.isnan(lo):
        return "too few seeds"
    reading = size_reading(lo, hi, margin)
    return "undecided" if reading == "inconclusive" else reading


def as_implied(expected: str, lo: float, hi: float, margin: float) -> str:
    """yes: the expected test passes; no: the interval shows what the construction rules out; else undecided.

    better: yes when lo > 0, no when hi < M (a gain of the margin is excluded). worse: yes when hi < 0, no when
    lo > -M (a loss of the margin is excluded). non-inferior: yes when lo > -M,
    no when hi < 0 (shown worse, and a loss of M not excluded). equivalent: yes when -M < lo and hi < M, no when
    a difference is shown (lo > 0 or hi < 0) without being shown to lie within the margin.
    """
    if expected not in EXPECTATIONS:
        raise ValueError(f"expected: {expected!r} is not one of {EXPECTATIONS}")
    if math.isnan(lo):
        return "undecided"
    if expected == "better":
        yes, no = lo > 0, hi < margin
    elif expected == "worse":
        yes, no = hi < 0, lo > -margin
    elif expected == "non-inferior":
        yes, no = lo > -margin, hi < 0
    else:
        yes, no = -margin < lo and hi < margin, lo > 0 or hi < 0
    return "yes" if yes else "no" if no else "undecided"


def _completed(df: pd.DataFrame, variant: str) -> pd.DataFrame:
    return df[(df["variant"] == variant) & (df["status"] == "completed")]


def seed_values(df: pd.DataFrame, variant: str, metric: str, trained_only: bool = False) -> dict[int, float]:
    """seed -> metric (percent) over the variant's completed runs (those that trained, with `trained_only`)."""
    done = _completed(df, variant)
    if trained_only:
        done = done[trained_mask(done)]
    return {int(s): 100.0 * float(v) for s, v in zip(done["seed"], done[metric], strict=True) if math.isfinite(v)}


def untrained_count(df: pd.DataFrame, variant: str) -> tuple[int, int]:
    """(runs that did not train, completed runs) of a variant."""
    done = _completed(df, variant)
    return int((~trained_mask(done)).sum()), len(done)


def _control_kind(df: pd.DataFrame, a: str, b: str) -> str:
    """The control data both variants ran on (their probe_kind); a comparison across two kinds is an error."""
    if "probe_kind" not in df.columns:
        return ""
    kinds = set(df.loc[df["variant"].isin([a, b]), "probe_kind"].astype(str))
    if len(kinds) > 1:
        raise ResultsError(f"control {a} vs {b}: the two variants ran on different data "
                           f"(probe_kind {', '.join(sorted(kinds))})")
    return next(iter(kinds), "")


def rule_expected(expected: str) -> tuple[Verdict, ...]:
    """The verdicts of the claims rule (study.results.stats.decide, Holm, with the margin's equivalence reading)
    that agree with what the construction implies for "a vs b"."""
    return {"better": (Verdict.SUPPORTED,), "worse": (Verdict.CONTRADICTED,),
            "non-inferior": (Verdict.SUPPORTED, Verdict.EQUIVALENT), "equivalent": (Verdict.EQUIVALENT,)}[expected]


def rule_as_implied(expected: str, verdict: Verdict) -> str:
    """yes: the claims rule's verdict is one the construction implies; no: it decided otherwise (a false verdict
    on data whose answer is known); undecided: inconclusive or too few seeds."""
    if verdict in rule_expected(expected):
        return "yes"
    return "no" if verdict.decided else "undecided"


def _claims_rule(df: pd.DataFrame, comparisons: Sequence[Comparison], alpha: float, metric: str,
                 trained_only: bool = False) -> list[dict[str, Any]]:
    """Each comparison judged exactly as a paper claim is: "a beats b" rows of the paired t-test, Holm over the
    study's comparisons, the rule's intervals, and "equivalent within ±m" for an inconclusive row inside the margin
    (`trained_only`: without the runs the training check flagged, as the verdicts are; every completed run is the
    sensitivity analysis)."""
    from study.results.stats import decide

    names = list(dict.fromkeys(v for c in comparisons for v in (c.a, c.b)))
    values = {v: seed_values(df, v, metric, trained_only) for v in names}
    seeds = sorted({s for v in names for s in values[v]})
    y = np.array([[values[v].get(s, np.nan) for s in seeds] for v in names], dtype=float).reshape(len(names), len(seeds))
    rows = decide(y, [(names.index(c.a), names.index(c.b)) for c in comparisons], alpha)
    return [{"rule_verdict": equivalence(r["verdict"], r["ci_low"], r["ci_high"], c.margin),
             "rule_ci_low": r["ci_low"], "rule_ci_high": r["ci_high"], "rule_confidence": r["confidence"]}
            for r, c in zip(rows, comparisons, strict=True)]


@dataclass(frozen=True)
class ControlRow:
    """One control comparison judged: its own rule's reading (one-sided at alpha / k, Bonferroni over the study's k
    comparisons) and, beside it, the claims rule's verdict on the same pair (Δ = a - b, points)."""

    control: str  # the probe kind both variants ran on
    a: str
    b: str
    expected: str  # one of EXPECTATIONS
    why: str
    margin: float
    n: int
    seeds: tuple[int, ...]
    diff: float
    ci_low: float  # the control rule's two-sided interval at `level`
    ci_high: float
    p_adjusted: float  # the expected test's p, Bonferroni-adjusted
    concluded: str  # what the interval shows against ±margin (`concluded`)
    as_implied: str  # yes | no | undecided (`as_implied`)
    level: float
    k: int  # the study's comparisons
    untrained: dict[str, tuple[int, int]]  # variant: (did not train, completed)
    rule_verdict: Verdict  # the claims rule on the seeds where both trained
    rule_ci_low: float
    rule_ci_high: float
    rule_confidence: float
    rule_verdict_every_run: Verdict  # the claims rule on every completed run (the sensitivity)
    rule_as_implied: str

    @property
    def rule_label(self) -> str:
        return self.rule_verdict.label(self.margin)

    @property
    def rule_label_every_run(self) -> str:
        return self.rule_verdict_every_run.label(self.margin)


def null_gains(rows: Sequence[ControlRow]) -> list[ControlRow]:
    """The null comparisons (expected equivalent) whose interval lies wholly above 0: a gains on b where the
    construction implies none. Largest Δ first."""
    return sorted((r for r in rows if r.expected == "equivalent" and r.ci_low > 0), key=lambda r: -r.diff)


def judge_controls(df: pd.DataFrame, comparisons: Sequence[Comparison], *, alpha: float = ALPHA,
                   metric: str = "miou") -> list[ControlRow]:
    """One row per comparison of the study file, in its order (a variant without runs gives "too few seeds"):
    the control rule's reading (below) and, beside it, the verdict of the rule that judges the paper's claims, both on
    the seeds where both variants' runs trained (the estimand of docs/statistics.md), with the claims rule on every
    completed run as the sensitivity analysis."""
    k = max(1, len(comparisons))
    by_rule = _claims_rule(df, comparisons, alpha, metric, trained_only=True) if comparisons else []
    every = _claims_rule(df, comparisons, alpha, metric) if comparisons else []
    level = alpha / k
    rows = []
    for cmp in comparisons:
        a, b, margin = cmp.a, cmp.b, cmp.margin
        kind = _control_kind(df, a, b)
        va, vb = seed_values(df, a, metric, trained_only=True), seed_values(df, b, metric, trained_only=True)
        seeds = sorted(set(va) & set(vb))
        t = paired_tests([va[s] - vb[s] for s in seeds], margin=margin, alpha=level)
        if t["n"] < MIN_SEEDS:  # no decision on fewer seeds, as for the claims
            t.update(ci_low=math.nan, ci_high=math.nan, p_better=math.nan, p_worse=math.nan,
                     p_noninferior=math.nan, p_equivalent=math.nan)
        p_key = {"better": "p_better", "worse": "p_worse", "non-inferior": "p_noninferior", "equivalent": "p_equivalent"}[cmp.expected]
        rule = by_rule[len(rows)]
        rows.append(ControlRow(
            control=kind, a=a, b=b, expected=cmp.expected, why=cmp.why, margin=margin, n=t["n"], seeds=tuple(seeds),
            diff=t["diff"], ci_low=t["ci_low"], ci_high=t["ci_high"],
            p_adjusted=min(1.0, k * t[p_key]) if math.isfinite(t[p_key]) else math.nan,
            concluded=concluded(t["ci_low"], t["ci_high"], margin),
            as_implied=as_implied(cmp.expected, t["ci_low"], t["ci_high"], margin), level=1 - 2 * level, k=k,
            untrained={v: untrained_count(df, v) for v in (a, b)}, **rule,
            rule_verdict_every_run=every[len(rows)]["rule_verdict"],
            rule_as_implied=rule_as_implied(cmp.expected, rule["rule_verdict"])))
    return rows
