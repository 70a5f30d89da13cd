"""Seed statistics that hold at a handful of seeds, with a verdict rule fixed before the data are seen.

Per variant: mean, std and a 95% t-interval (clipped to the metric's bounds). Per claim row (a pair of variants):
the paired differences over the seeds both ran, a paired t-test on that pair's own differences (no noise pooled
across variants, so unequal noise between variants cannot make another row's test anti-conservative), Holm's
step-down over all rows of the study, and an interval at the level Holm tested the row at, so that an interval
excluding 0 is a decided row and a decided row's interval excludes 0. With looks (seeds added in rounds,
study.results.sequential) each row's p is the smallest over its looks of p divided by the look's share of alpha
(Bonferroni over looks) before Holm. Checked by simulation in tests/test_claim_calibration.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import special, stats

from study.manifest import MIN_SEEDS  # fewer shared seeds than this: no verdict


class Verdict(StrEnum):
    """What the rule says of one row (a claim, a control judged as a claim, an A/A group)."""

    SUPPORTED = "supported"  # decided on the paper's side
    CONTRADICTED = "contradicted"  # decided against it
    INCONCLUSIVE = "inconclusive"
    TOO_FEW_SEEDS = "too few seeds"
    EQUIVALENT = "equivalent"  # inconclusive, its interval inside ±m

    @property
    def decided(self) -> bool:
        return self in (Verdict.SUPPORTED, Verdict.CONTRADICTED)

    def label(self, margin: float | None = None) -> str:
        """The verdict in words: "equivalent within ±m" names its margin."""
        return f"equivalent within ±{margin:g}" if self is Verdict.EQUIVALENT and margin else self.value

    @classmethod
    def read(cls, text: str) -> Verdict:
        """A verdict from its words, "equivalent within ±m" included."""
        return cls.EQUIVALENT if str(text).startswith("equivalent") else cls(text)


ALPHA = 0.05  # family-wise error over all claim rows of a study (and over all looks)
CONFIDENCE = 0.95  # descriptive intervals: per variant, P(improvement), the noise range


def summarize(values: Sequence[float], confidence: float = CONFIDENCE,
              bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """n, mean, sample std and the t-interval of the mean (nan where n is too small), clipped to `bounds`."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else math.nan, "std": float(x.std(ddof=1)) if n > 1 else math.nan,
           "ci_low": math.nan, "ci_high": math.nan}
    if n > 1:
        out["ci_low"], out["ci_high"] = t_interval(out["mean"], out["std"] / math.sqrt(n), n - 1, confidence)
        if bounds is not None:
            out["ci_low"], out["ci_high"] = max(bounds[0], out["ci_low"]), min(bounds[1], out["ci_high"])
    return out


def t_p_value(mean: float, se: float, df: float) -> float:
    """Two-sided p of mean / se against Student's t with df; exact 0 / 1 when se is 0."""
    if se <= 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * special.stdtr(df, -abs(mean) / se))  # = 2 * stats.t.sf(|t|, df), without its overhead


def t_interval(mean: float, se: float, df: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """mean +- t(df) * se: it excludes 0 exactly when t_p_value(mean, se, df) < 1 - confidence."""
    half = -float(special.stdtrit(df, (1 - confidence) / 2)) * se  # = stats.t.isf((1 - confidence) / 2, df) * se
    return mean - half, mean + half


def paired_t(d: np.ndarray) -> dict[str, Any]:
    """The paired t-test of differences d (finite values): n, mean, sd, df, two-sided p (nan under MIN_SEEDS)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    mean = math.fsum(d) / n if n else math.nan
    out: dict[str, Any] = {"n": n, "mean": mean, "sd": math.nan, "df": n - 1, "p_value": math.nan}
    if n >= MIN_SEEDS:
        out["sd"] = 0.0 if (d == d[0]).all() else math.sqrt(math.fsum((d - mean) ** 2) / (n - 1))
        out["p_value"] = t_p_value(out["mean"], out["sd"] / math.sqrt(n), n - 1)
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and does not count in the family)."""
    return holm_levels(p_values)[0]


def holm_levels(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[float]]:
    """Holm-adjusted p-values and each row's test level: alpha / (m - k) for the row Holm rejects at step k
    (k = 0, 1, ...), alpha / (m - r) for every row it does not reject (r rows rejected), nan for nan.

    A row is rejected (adjusted p < alpha) exactly when its own p is below its level, and every unrejected row's p
    is at least its level: an interval at confidence 1 - level excludes 0 exactly for the rejected rows.
    """
    p = np.asarray(p_values, dtype=float)
    idx = [i for i in np.argsort(p, kind="stable") if math.isfinite(p[i])]
    m, adjusted, levels, running = len(idx), [math.nan] * len(p), [math.nan] * len(p), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = float(running)
    rejected = sum(adjusted[i] < alpha for i in idx)
    for rank, i in enumerate(idx):
        levels[i] = alpha / (m - rank) if rank < rejected else alpha / (m - rejected)
    return adjusted, levels


def wilson(k: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (k may count ties as halves); nan for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    z = float(stats.norm.isf((1 - confidence) / 2))
    share = k / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if k <= 0 else max(0.0, centre - half)), (1.0 if k >= n else min(1.0, centre + half))


def paired_improvement(d: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """P(improvement) on paired seeds: the share of seeds whose difference is > 0 (ties 1/2), with its Wilson
    interval; the same seeds the row's difference uses. nan without seeds."""
    d = np.asarray(d, dtype=float)
    if not len(d):
        return math.nan, math.nan, math.nan
    k = float((d > 0).sum() + 0.5 * (d == 0).sum())
    return (k / len(d), *wilson(k, len(d), confidence))


def decide(y: np.ndarray, pairs: Sequence[tuple[int, int]], alpha: float = ALPHA, *,
           looks: Sequence[int] | None = None, spend: Sequence[float] | None = None,
           finished: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The study-level rule on a variants x seeds matrix (nan: missing, failed or did not train) for
    (better, worse) row pairs.

    looks: planned look sizes as column counts, columns in the plan's seed order (default: one look over every
    column); spend: the share of alpha each look gets (default equal shares; they must sum to at most 1). A look
    counts for a pair once both variants `finished` (default: finite) every seed of it. Per pair and look: the
    paired t over the finite differences; the pair's p = min over its looks of p / share (capped at 1); Holm over
    every pair with a p. A verdict needs Holm-adjusted p < alpha, its side is the difference's sign at the look
    shown: the deciding look (smallest p / share) for a decided pair, the last tested look otherwise. Its
    interval: the t-interval at confidence 1 - level * share, `level` from `holm_levels`. Each row also says
    which columns (seeds) the shown look used, and how many looks it had.
    """
    y = np.asarray(y, dtype=float)
    finished = np.isfinite(y) if finished is None else np.asarray(finished, dtype=bool)
    sizes = tuple(looks) if looks else (y.shape[1],)
    shares = tuple(spend) if spend else (1 / len(sizes),) * len(sizes)
    if len(shares) != len(sizes) or sum(shares) > 1 + 1e-9 or min(shares) <= 0:
        raise ValueError(f"spend: {len(sizes)} positive shares summing to at most 1 expected, got {shares}")
    out = []
    for a, b in pairs:
        done = []
        for size in sizes:
            if looks and (size > y.shape[1] or not (finished[a, :size] & finished[b, :size]).all()):
                break
            cols = np.flatnonzero(np.isfinite(y[a, :size] - y[b, :size]))
            done.append((cols, paired_t(y[a, cols] - y[b, cols])))
        tested = [i for i, (_, t) in enumerate(done) if math.isfinite(t["p_value"])]
        best = min(tested, key=lambda i: (done[i][1]["p_value"] / shares[i], -i)) if tested else None
        p = min(1.0, done[best][1]["p_value"] / shares[best]) if best is not None else math.nan
        out.append({"p_value": p, "looks": len(done), "planned_looks": len(sizes), "_done": done, "_best": best,
                    "_last": tested[-1] if tested else (len(done) - 1 if done else None)})
    adjusted, levels = holm_levels([r["p_value"] for r in out], alpha)
    for row, p_adj, level in zip(out, adjusted, levels, strict=True):
        done, best, last = row.pop("_done"), row.pop("_best"), row.pop("_last")
        decided = math.isfinite(p_adj) and p_adj < alpha
        shown = best if decided else last
        cols, t = done[shown] if shown is not None else (np.zeros(0, int), paired_t(np.zeros(0)))
        row.update(n=t["n"], diff=t["mean"], sd=t["sd"], df=t["df"], p_adjusted=p_adj, look=(shown or 0) + 1,
                   columns=[int(c) for c in cols], ci_low=math.nan, ci_high=math.nan, confidence=math.nan)
        if math.isfinite(p_adj) and math.isfinite(t["p_value"]):
            row["confidence"] = 1 - level * shares[shown]
            row["ci_low"], row["ci_high"] = t_interval(t["mean"], t["sd"] / math.sqrt(t["n"]), t["df"],
                                                       row["confidence"])
        if decided:
            row["verdict"] = Verdict.SUPPORTED if t["mean"] > 0 else Verdict.CONTRADICTED
        else:
            row["verdict"] = Verdict.INCONCLUSIVE if math.isfinite(p_adj) and math.isfinite(t["p_value"]) \
                else Verdict.TOO_FEW_SEEDS
    return out


RULE = ("Δ is the mean over shared seeds of (better - worse), on {runs}. Noise model, fixed before "
        "the data: each row uses only its own two variants' paired differences (their sd, df = seeds - 1, shown "
        "per row); nothing is pooled across variants, so a noisier variant widens only its own rows. Each row's "
        "p-value is a paired t-test of Δ{looks_rule}; Holm's step-down over all {m} claim rows keeps the chance of "
        "any false verdict in the study below {alpha:g}. Supported / contradicted: Holm-adjusted p < {alpha:g}, on "
        "Δ's side; inconclusive otherwise. The interval is the paired t-interval at the level Holm tested the row "
        "at (a row decided at Holm's step k: 1 - {alpha:g}/(m-k+1){looks_level}; an undecided row: Holm's next "
        "threshold), so it excludes 0 exactly when the row is decided; it is at least a 95% interval. "
        "P(improvement) is the share of the shared seeds on which the better variant scores higher (ties 1/2), "
        "with its 95% Wilson interval. Detectable Δ: the smallest difference this row's test finds with 80% power "
        "at its seeds and Holm's first threshold ({alpha:g}/{m}{looks_first}), as a range over the 95% chi-square "
        "interval of the noise sd; seeds for the paper's Δ: the seeds that find the paper's difference with 80% "
        "power at {alpha:g}/{m} in one look, over the same range. Per-variant intervals are 95% t-intervals "
        "clipped to [0, 100].")


def rule_text(m: int, alpha: float = ALPHA, looks: Sequence[int] = (), shares: Sequence[float] = (),
              runs: str = "every completed run") -> str:
    """RULE filled in for a study of m rows (and the planned looks with their shares of alpha, if any), judged on
    `runs`."""
    if len(looks) > 1:
        split = ", ".join(f"{n} seeds: {share:.3g}" for n, share in zip(looks, shares, strict=True))
        return RULE.format(m=m, alpha=alpha, runs=runs, looks_rule=f" at each planned look (seeds added in rounds to the "
                           f"variants of undecided rows; looks and their shares of alpha fixed in advance: {split}), "
                           "the row's p being the smallest over its looks of p / share (Bonferroni over looks)",
                           looks_level=" times the deciding look's share", looks_first=" times the look's share")
    return RULE.format(m=m, alpha=alpha, runs=runs, looks_rule="", looks_level="", looks_first="")
