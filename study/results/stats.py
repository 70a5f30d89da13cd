"""Seed statistics: per-variant mean, std and 95% t-interval; paired differences over shared seeds with a
bootstrap CI (scipy.stats.bootstrap, fixed random state) and a paired t-test."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

MIN_SEEDS = 3  # fewer shared seeds than this: no verdict


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """n, mean, sample std and the t-interval of the mean (nan where n is too small)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else math.nan, "std": float(x.std(ddof=1)) if n > 1 else math.nan,
           "ci_low": math.nan, "ci_high": math.nan}
    if n > 1:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * out["std"] / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out


def paired_difference(better: Mapping[int, float], worse: Mapping[int, float], confidence: float = 0.95,
                      resamples: int = 9999, random_state: int = 0) -> dict[str, Any]:
    """better - worse over the seeds both have: mean, bootstrap CI of the mean, paired t-test p-value."""
    seeds = sorted(s for s in better if s in worse and math.isfinite(better[s]) and math.isfinite(worse[s]))
    diffs = np.asarray([better[s] - worse[s] for s in seeds], dtype=float)
    out: dict[str, Any] = {"n": len(seeds), "seeds": seeds, "mean": float(diffs.mean()) if len(seeds) else math.nan,
                           "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    if len(seeds) < MIN_SEEDS:
        return out
    if np.ptp(diffs) <= 1e-12:  # every seed gave the same difference: the interval is that point
        out["ci_low"] = out["ci_high"] = float(diffs[0])
        out["p_value"] = 0.0 if diffs[0] != 0 else 1.0
        return out
    boot = stats.bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=resamples,
                           method="percentile", random_state=np.random.default_rng(random_state))
    out["ci_low"], out["ci_high"] = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    out["p_value"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return out


def verdict(diff: Mapping[str, Any], alpha: float = 0.05) -> str:
    """supported (CI above 0), contradicted (CI below 0), inconclusive (CI crosses 0), or too few seeds.

    With a handful of seeds the percentile bootstrap is narrower than it should be, so a side of 0 also needs the
    paired t-test at `alpha`; otherwise the verdict is inconclusive.
    """
    if diff["n"] < MIN_SEEDS:
        return "too few seeds"
    significant = diff["p_value"] < alpha
    if diff["ci_low"] > 0 and significant:
        return "supported"
    if diff["ci_high"] < 0 and significant:
        return "contradicted"
    return "inconclusive"
