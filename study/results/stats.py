"""Seed statistics that hold at a handful of seeds.

Per variant: mean, std and a 95% t-interval (clipped to the metric's bounds). Per compared pair: the mean
difference over shared seeds. The study-level rule (`decide`) tests every pair against one noise variance
estimated from the whole study (two-way variant x seed residuals, df = (V-1)(S-1)), with a guard that moves the
pairs of a variant whose spread is far larger than the others' to their own paired t-test, and Holm's step-down
over all rows. Chosen by simulation (tests/test_claim_calibration.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

MIN_SEEDS = 3  # fewer shared seeds than this: no verdict
ALPHA = 0.05  # family-wise error over all claim rows of a study
FLAG_LEVEL = 0.05  # a variant whose residual variance exceeds the rest's at this level gets its own test
EXCLUDE_LEVEL = 0.001  # ... and at this level it also leaves the pooled variance (a collapsing variant)
POWER = 0.8


def summarize(values: Sequence[float], confidence: float = 0.95,
              bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """n, mean, sample std and the t-interval of the mean (nan where n is too small), clipped to `bounds`."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else math.nan, "std": float(x.std(ddof=1)) if n > 1 else math.nan,
           "ci_low": math.nan, "ci_high": math.nan}
    if n > 1:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * out["std"] / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
        if bounds is not None:
            out["ci_low"], out["ci_high"] = max(bounds[0], out["ci_low"]), min(bounds[1], out["ci_high"])
    return out


def t_p_value(mean: float, se: float, df: float) -> float:
    """Two-sided p of mean / se against Student's t with df; exact 0 / 1 when se is 0."""
    if se <= 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * stats.t.sf(abs(mean) / se, df))


def t_interval(mean: float, se: float, df: float, confidence: float = 0.95) -> tuple[float, float]:
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return mean - half, mean + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and does not count in the family)."""
    p = np.asarray(p_values, dtype=float)
    idx = [i for i in np.argsort(p, kind="stable") if math.isfinite(p[i])]
    m, out, running = len(idx), [math.nan] * len(p), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = float(running)
    return out


def prob_improvement(better: Sequence[float], worse: Sequence[float]) -> float:
    """P(a run of `better` scores above a run of `worse`) over all pairs of runs, ties 1/2."""
    a = np.asarray([v for v in better if math.isfinite(v)], dtype=float)
    b = np.asarray([v for v in worse if math.isfinite(v)], dtype=float)
    if not len(a) or not len(b):
        return math.nan
    return float(((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])).mean())


def seeds_needed(diff: float, sd: float, alpha: float, df_of_n=lambda n: n - 1, power: float = POWER,
                 max_n: int = 10000) -> float:
    """Smallest seed count whose two-sided t-test at `alpha` has `power` at the observed mean and spread."""
    if not math.isfinite(diff) or not math.isfinite(sd) or diff == 0:
        return math.nan
    if sd == 0:
        return float(MIN_SEEDS)
    def enough(n: int) -> bool:
        df, nc = df_of_n(n), abs(diff) / (sd / math.sqrt(n))
        crit = stats.t.isf(alpha / 2, df)
        return bool(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) >= power)

    z = stats.norm.isf(alpha / 2) + stats.norm.ppf(power)
    lo = max(MIN_SEEDS, int((z * sd / abs(diff)) ** 2))  # the normal approximation; t needs at least as many
    if lo > max_n:
        return math.inf
    if enough(lo):
        return float(lo)
    hi = lo + 1
    while not enough(hi):  # double, then bisect: power grows with n
        lo, hi = hi, 2 * hi
        if hi > 2 * max_n:
            return math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return float(hi) if hi <= max_n else math.inf


@dataclass(frozen=True)
class Noise:
    """The study's pooled noise: per-run variance, its df, the variants it covers, and those flagged out."""

    variance: float
    df: int
    seeds: tuple[int, ...]  # column indices of the balanced block
    pooled: tuple[int, ...]  # row indices whose pairs (with each other) use the pooled variance
    flagged: tuple[int, ...]  # rows whose spread was far larger: their pairs use their own paired test


def _residual_variances(y: np.ndarray) -> tuple[np.ndarray, float, int]:
    r = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    v, s = y.shape
    df = (v - 1) * (s - 1)
    ss = (r ** 2).sum(1)
    return ss, float(ss.sum() / df) if df else math.nan, df


def pooled_noise(y: np.ndarray, rows: Sequence[int], flag_level: float = FLAG_LEVEL) -> Noise | None:
    """Two-way (variant x seed) residual variance over the largest balanced block of `rows` of y (nan: missing).

    Guard: while the variant with the largest residual sum of squares exceeds the rest's by an F-test at
    `flag_level`, it is flagged (and the test repeated on the rest, while more than 3 remain). Flagged variants'
    pairs get their own paired t-test. The variance keeps a flagged variant unless its F-test p is below
    EXCLUDE_LEVEL: a chance flag (about 5% of null studies) never leaves a variance biased low, while a variant
    that collapsed on some seeds (spread many times the others') does not drown every other pair's test.
    """
    rows = [i for i in rows if np.isfinite(y[i]).sum() >= MIN_SEEDS]
    while len(rows) >= 3:
        cols = [j for j in range(y.shape[1]) if np.isfinite(y[rows, j]).all()]
        if len(cols) >= MIN_SEEDS:
            break
        rows.remove(min(rows, key=lambda i: (np.isfinite(y[i]).sum(), -i)))
    else:
        return None
    _, var, df = _residual_variances(y[np.ix_(rows, cols)])
    flagged: list[int] = []
    test = list(rows)
    while len(test) > 3:
        ss, _, dft = _residual_variances(y[np.ix_(test, cols)])
        v, k = len(test), int(np.argmax(ss))
        df1, df2 = dft / v, dft * (v - 1) / v
        rest = (ss.sum() - ss[k]) / df2
        if rest > 0 and stats.f.sf((ss[k] / df1) / rest, df1, df2) >= flag_level:
            break
        flagged.append(test.pop(k))
    rows = [i for i in rows if i not in flagged]
    if flagged and len(rows) >= 3:  # against the variants that share the noise: who is far noisier?
        ss, base, dft = _residual_variances(y[np.ix_(rows + flagged, cols)])
        _, rest, df2 = _residual_variances(y[np.ix_(rows, cols)])
        df1 = dft / (len(rows) + len(flagged))
        excluded = [i for n, i in enumerate(rows + flagged) if i in flagged and rest > 0
                    and stats.f.sf((ss[n] / df1) / rest, df1, df2) < EXCLUDE_LEVEL]
        if excluded:  # the pooled pairs' noise without the variants far noisier than the rest
            _, var, df = _residual_variances(y[np.ix_([i for i in rows + flagged if i not in excluded], cols)])
    return Noise(var, df, tuple(cols), tuple(rows), tuple(flagged))


def decide(y: np.ndarray, pairs: Sequence[tuple[int, int]], alpha: float = ALPHA,
           confidence: float = 0.95, plan: bool = True) -> list[dict[str, Any]]:
    """The study-level rule on a variants x seeds matrix (nan: missing) for (better, worse) row pairs.

    Each pair: mean difference d over its shared seeds (n). When both rows are in the pooled block, its test
    is t = d / sqrt(2 sigma^2 / n) with the pooled df; otherwise the pair's own paired t-test (df n - 1).
    Holm over every pair with a p-value; a verdict needs Holm-adjusted p < alpha, its side is d's sign.
    """
    rows = sorted({i for p in pairs for i in p})
    noise = pooled_noise(y, rows)
    out = []
    for a, b in pairs:
        ok = np.isfinite(y[a]) & np.isfinite(y[b])
        d = (y[a] - y[b])[ok]
        n = int(ok.sum())
        row: dict[str, Any] = {"n": n, "diff": float(d.mean()) if n else math.nan, "ci_low": math.nan,
                               "ci_high": math.nan, "p_value": math.nan, "sd": math.nan, "df": math.nan,
                               "pooled": False}
        if n >= MIN_SEEDS:
            if noise is not None and a in noise.pooled and b in noise.pooled:
                sd, df, row["pooled"] = math.sqrt(2 * noise.variance), noise.df, True
            else:
                sd, df = float(d.std(ddof=1)), n - 1
            se = sd / math.sqrt(n)
            row.update(sd=sd, df=df, p_value=t_p_value(row["diff"], se, df))
            row["ci_low"], row["ci_high"] = t_interval(row["diff"], se, df, confidence)
            if n >= 10:  # enough seeds for a BCa bootstrap of the pair's own differences
                row["ci_low"], row["ci_high"] = bca_interval(d, confidence)
        out.append(row)
    adjusted = holm([r["p_value"] for r in out])
    m = sum(math.isfinite(p) for p in adjusted)
    v_pooled = len(noise.pooled) if noise is not None else 0
    for row, p in zip(out, adjusted, strict=True):
        row["p_adjusted"] = p
        if row["n"] < MIN_SEEDS:
            row["verdict"] = "too few seeds"
        elif p < alpha:
            row["verdict"] = "supported" if row["diff"] > 0 else "contradicted"
        else:
            row["verdict"] = "inconclusive"
        row["seeds_needed"] = math.nan
        if plan and row["verdict"] == "inconclusive":
            df_of_n = (lambda k: (v_pooled - 1) * (k - 1)) if row["pooled"] else (lambda k: k - 1)
            row["seeds_needed"] = seeds_needed(row["diff"], row["sd"], alpha / max(m, 1), df_of_n)
    return out


def bca_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    if np.ptp(d) <= 1e-12:
        return float(d[0]), float(d[0])
    boot = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=4999, method="BCa",
                           random_state=np.random.default_rng(0))
    return float(boot.confidence_interval.low), float(boot.confidence_interval.high)


RULE = ("Δ is the mean over shared seeds of (better - worse). The noise of one run is estimated once for the "
        "whole study from the two-way variant x seed residuals (df = (V-1)(S-1)); a variant whose residual spread "
        "exceeds the others' (F-test at 5%) is set apart and its pairs use their own paired t-test (df = n-1); one "
        "far noisier than the rest (F-test p < 0.001, e.g. a variant that collapsed on some seeds) also leaves the "
        "pooled variance. "
        "Each pair's p-value is a t-test of Δ; Holm's step-down over all {m} claim rows keeps the chance of any "
        "false verdict in the study below {alpha:g}. Supported / contradicted: Holm-adjusted p < {alpha:g}, on Δ's "
        "side; inconclusive otherwise. The seed interval is the matching 95% t-interval (unadjusted; BCa bootstrap "
        "from 10 seeds). P(improvement) is the share of (better run, worse run) pairs where the better variant "
        "scores higher, ties 1/2. Seeds needed: seeds for 80% power at Holm's first threshold ({alpha:g}/{m}) at "
        "the observed Δ and spread. Per-variant intervals are t-intervals clipped to [0, 100].")
