"""What a claim row could detect, and what the paper's difference would need, from the row's own noise.

Both come from the power of the two-sided paired t-test (noncentral t) at a stated level. The noise is the sd of
the row's paired differences, known only up to its chi-square interval: at 5 seeds the 95% interval of an sd
spans a factor of about 4.8, so the seeds needed (which scale with the variance) span a factor of about 23.
Every figure is therefore a range over that interval, and "not estimable" (nan) where the noise is not: fewer
than MIN_SEEDS paired seeds, or no spread at all.
"""

from __future__ import annotations

import math

from scipy import optimize, stats

from study.results.stats import CONFIDENCE, MIN_SEEDS

POWER = 0.8
MAX_SEEDS = 10000  # beyond this, "more than"


def t_power(effect: float, n: int, level: float) -> float:
    """Power of the two-sided paired t-test at `level` with n pairs when |mean| / sd of the differences = effect."""
    df, nc = n - 1, abs(effect) * math.sqrt(n)
    crit = stats.t.isf(level / 2, df)
    lower = stats.nct.sf(crit, df, -nc)  # P(T < -crit) by symmetry; nct.cdf returns nan far in this tail
    return float(stats.nct.sf(crit, df, nc) + (0.0 if math.isnan(lower) else lower))


def detectable_effect(n: int, level: float, power: float = POWER) -> float:
    """The smallest |mean| / sd the paired t-test at `level` finds with `power` at n pairs (nan under 2 pairs)."""
    if n < 2:
        return math.nan
    hi = 1.0
    while t_power(hi, n, level) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: t_power(e, n, level) - power, 0.0, hi, xtol=1e-10))


def seeds_for(effect: float, level: float, power: float = POWER, max_n: int = MAX_SEEDS) -> float:
    """The fewest pairs (at least MIN_SEEDS) whose paired t-test at `level` has `power` at |mean| / sd = effect;
    inf beyond max_n, nan for no effect."""
    if not math.isfinite(effect) or effect == 0:
        return math.nan
    if math.isinf(effect) or t_power(effect, MIN_SEEDS, level) >= power:
        return float(MIN_SEEDS)
    lo, hi = MIN_SEEDS, MIN_SEEDS * 2
    while t_power(effect, hi, level) < power:  # power grows with n: double, then bisect
        lo, hi = hi, hi * 2
        if lo > max_n:
            return math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if t_power(effect, mid, level) >= power else (mid, hi)
    return float(hi) if hi <= max_n else math.inf


def sd_range(sd: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Chi-square interval of a normal sd estimated from n values (df n - 1); nan where not estimable."""
    if n < MIN_SEEDS or not math.isfinite(sd) or sd <= 0:
        return math.nan, math.nan
    df = n - 1
    return (sd * math.sqrt(df / stats.chi2.isf((1 - confidence) / 2, df)),
            sd * math.sqrt(df / stats.chi2.ppf((1 - confidence) / 2, df)))


def plan(sd: float, n: int, *, level: float, planning_level: float, paper_diff: float = math.nan,
         margin: float | None = None, power: float = POWER) -> dict[str, float]:
    """A row's design figures: the smallest difference it detects at its n seeds and `level`
    (detectable_low/high), and the seeds that detect `paper_diff` (seeds_low/high) and the smallest difference of
    interest `margin` (margin_seeds_low/high) at `planning_level`, each over the sd's interval; nan where not
    estimable."""
    lo, hi = sd_range(sd, n)
    out = {"noise_sd_low": lo, "noise_sd_high": hi, "detectable_low": math.nan, "detectable_high": math.nan,
           "seeds_low": math.nan, "seeds_high": math.nan, "margin_seeds_low": math.nan, "margin_seeds_high": math.nan}
    if math.isnan(lo):
        return out
    effect = detectable_effect(n, level, power)
    out["detectable_low"], out["detectable_high"] = effect * lo, effect * hi
    for key, target in (("seeds", paper_diff), ("margin_seeds", margin if margin else math.nan)):
        if math.isfinite(target) and target != 0:
            out[f"{key}_low"] = seeds_for(abs(target) / lo, planning_level, power)
            out[f"{key}_high"] = seeds_for(abs(target) / hi, planning_level, power)
    return out
