"""A/A: how often the rule that judges the paper's claims decides between two variants that are the same model.

A study's `aa: {a, b, seeds_per_group}` names two variants that compute the same network, b a twin of a
(`run.twin`: its own draw of the pyramid and heads and so of the dropout masks, the seed's backbone draw, data order
and augmentation kept, as two variants of one seed differ). Their shared seeds, in order, are cut into disjoint
groups of `seeds_per_group`; each group is one A/A comparison "a beats b", judged by exactly the code that judges a
claim row (study.results.stats.decide on the paired differences of the seeds on which both runs trained, the rule's interval,
and "equivalent within ±m" for an inconclusive row inside the study's equivalence margin). Each comparison is
its own Holm family of one row, the most liberal family the rule forms: in a study of m rows Holm tests every row
at alpha/m to alpha, so a study's per-row false-verdict rate is at most the one measured here.
A false verdict is "supported" or "contradicted" (the two are the same model); its rate comes with an exact
(Clopper-Pearson) 95% interval.

Beside the fixed groups, the resampled level (`resampled_level`): the same rule over many random regroupings of the
observed paired differences, each with a random sign, into disjoint groups of n (3, 5, 10), its false-verdict rate with its Monte Carlo error.
It says how the rule behaves on this noise at each n, given these differences; it does not replace the fixed groups,
whose verdicts are the study's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from study.results.claims import equivalence
from study.results.controls import seed_values
from study.results.images import image_variance
from study.results.stats import ALPHA, MIN_SEEDS, Verdict, decide

SIZES = (3, 5, 10)  # group sizes of the resampled level
DRAWS = 100000  # groups judged per size (at least; whole regroupings): a Monte Carlo se near 0.07 points


@dataclass(frozen=True)
class AAGroup:
    """One A/A comparison: a group of seeds judged as a claim row "a beats b" (Δ = a - b, points)."""

    seeds: tuple[int, ...]
    diff: float
    ci_low: float
    ci_high: float
    confidence: float  # the interval's level (the rule's, for a family of one row)
    p_value: float
    t: float  # the paired t statistic (±inf where every difference is the same and not 0)
    verdict: Verdict
    margin: float | None = None

    @property
    def false(self) -> bool:
        """Any decided verdict between twins of one model is false."""
        return self.verdict.decided

    @property
    def label(self) -> str:
        return self.verdict.label(self.margin)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of k successes in n trials (nan without trials)."""
    if n == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def judge_aa(df: pd.DataFrame, aa: dict[str, Any], *, margin: float | None = None, alpha: float = ALPHA,
             metric: str = "miou", planned: Sequence[int] = (),
             images: Mapping[tuple[str, int], np.ndarray] | None = None) -> dict[str, Any]:
    """The A/A comparisons of a study: one row per group of seeds (verdict, Δ, interval), the false-verdict
    count and rate with its 95% interval, and the seeds left over (fewer than a group).

    With `planned` (the study file's seeds, in order) the groups are fixed before any run: consecutive slices of
    that list, each judged once all its seeds have both runs completed and otherwise listed as waiting, so a
    missing run never regroups the seeds after it. Seeds both variants completed outside the plan (or without one)
    follow, in order. A group is judged on its seeds where both runs trained (the claims' estimand); its runs that
    did not train are counted (`stalls`, per variant) and a group left with fewer than MIN_SEEDS reads "too few
    seeds". With `images` (study.results.images.bootstrap_mious's resampled mIoUs) `noise` says how much of the
    differences' spread is the evaluation sample's (`noise_sources`)."""
    a, b, size = aa["a"], aa["b"], aa["seeds_per_group"]
    ra, rb = seed_values(df, a, metric), seed_values(df, b, metric)  # every completed run
    va, vb = seed_values(df, a, metric, trained_only=True), seed_values(df, b, metric, trained_only=True)
    seeds = [*planned, *sorted(set(ra) & set(rb) - set(planned))]  # seeds run beyond the plan come after it
    cut = [seeds[i: i + size] for i in range(0, len(seeds) - size + 1, size)]
    groups = [g for g in cut if all(s in ra and s in rb for s in g)]
    waiting = [g for g in cut if g not in groups]
    rows = []
    for group in groups:
        y = np.array([[va.get(s, np.nan) for s in group], [vb.get(s, np.nan) for s in group]])
        (d,) = decide(y, [(0, 1)], alpha)
        rows.append(AAGroup(seeds=tuple(group), diff=d["diff"], ci_low=d["ci_low"], ci_high=d["ci_high"],
                            confidence=d["confidence"], p_value=d["p_value"], t=_t(d["diff"], d["sd"], d["n"]),
                            verdict=equivalence(d["verdict"], d["ci_low"], d["ci_high"], margin), margin=margin))
    k = sum(r.false for r in rows)
    lo, hi = clopper_pearson(k, len(rows))
    shared = sorted(set(va) & set(vb))
    diffs = [va[s] - vb[s] for s in shared]
    return {"a": a, "b": b, "seeds_per_group": size, "groups": rows, "false": k, "n": len(rows),
            "rate": k / len(rows) if rows else math.nan, "rate_low": lo, "rate_high": hi, "alpha": alpha,
            "margin": margin, "leftover": seeds[len(cut) * size:], "waiting": waiting, "planned": len(cut),
            "equivalent": sum(r.verdict is Verdict.EQUIVALENT for r in rows),
            "differences": diffs, "resampled": resampled_level(diffs, alpha=alpha),
            "noise": noise_sources(diffs, image_variance(images, a, b, shared) if images and metric == "miou" else None),
            "stalls": {v: (len(set(r) - set(t)), len(r)) for v, r, t in ((a, ra, va), (b, rb, vb))}}


def noise_sources(diffs: Sequence[float], image: float | None) -> dict[str, float] | None:
    """The paired differences' variance over seeds (`total`, points²) split into the evaluation sample's part
    (`image`: study.results.images.image_variance) and what is left (`training`), with `share` = image / total and
    `training_sd` = sqrt(training). The seeds share one evaluation set, so the sample's part of the spread over
    seeds is at most `image`: `share` is an upper bound and `training_sd` a lower one, the sd that scoring more
    images could not go below. None without the image part or with fewer than MIN_SEEDS differences."""
    d = [x for x in diffs if math.isfinite(x)]
    if image is None or len(d) < MIN_SEEDS:
        return None
    total = float(np.var(d, ddof=1))
    training = max(total - image, 0.0)
    return {"n": len(d), "total": total, "image": image, "training": training,
            "share": image / total if total else math.nan, "training_sd": math.sqrt(training)}


def _t(diff: float, sd: float, n: int) -> float:
    """A group's paired t statistic (±inf where its differences are all equal and not 0, nan where all 0)."""
    if not math.isfinite(sd) or n < MIN_SEEDS:
        return math.nan
    if sd == 0:
        return math.copysign(math.inf, diff) if diff else math.nan
    return diff / (sd / math.sqrt(n))


def false_verdicts(groups: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Per row of `groups` (groups x n paired differences, finite, n >= MIN_SEEDS): whether the claims rule on that
    group alone (a Holm family of one row: decided at p < alpha) gives a false verdict, supported or contradicted.

    The paired t-test of study.results.stats.paired_t / t_p_value, vectorised: the same p (to rounding) and so the
    same verdicts as `decide` (tests/test_aa.py checks that on many random groups); an equivalence margin never
    turns a decided row, so it does not enter."""
    g = np.asarray(groups, dtype=float)
    n = g.shape[1]
    mean = g.mean(axis=1)
    sd = g.std(axis=1, ddof=1)
    same = (g == g[:, :1]).all(axis=1)  # all equal: paired_t's sd is exactly 0
    se = np.where(same, 1.0, sd) / math.sqrt(n)
    p = np.where(same, np.where(mean != 0, 0.0, 1.0), 2 * special.stdtr(n - 1, -np.abs(mean) / se))
    return p < alpha


def resampled_level(diffs: Sequence[float], sizes: Sequence[int] = SIZES, draws: int = DRAWS, seed: int = 0,
                    alpha: float = ALPHA, flip: bool = True) -> list[dict[str, Any]]:
    """The claims rule's false-verdict rate over random regroupings of the observed paired differences, per group
    size n in `sizes`: each regrouping shuffles the differences (a numpy Generator seeded with `seed`, so the same
    differences give the same numbers), gives each a random sign (`flip`) and cuts them into disjoint groups of n,
    each judged as its own family of one row (`false_verdicts`); regroupings are drawn until at least `draws`
    groups are judged.

    Why the signs: twins are exchangeable (which one is `a` is a name), so under the A/A's null a difference and its
    negative are equally likely. Without flips every regrouping inherits the pool's own mean and skew, which a pool
    of a few dozen differences carries by chance and which groups of larger n pick up ever more often: the rate
    would then grow with n for a reason that is the pool's, not the rule's.

    Per n: n, regroupings, groups judged, false verdicts, rate, and `se`, its Monte Carlo standard error: the sd
    of the per-regrouping rates over sqrt(regroupings). The regroupings are independent given the differences, the
    groups are not: the groups of one regrouping are cut from the same differences without replacement (their
    means sum to the total: one extreme group makes another less likely). The binomial se over all groups assumes
    independent groups and so does not hold; the se between whole regroupings (batch means) does, whatever the
    dependence inside one. It is the error of the simulation alone, given these differences, not the sampling error
    of the differences themselves. A size with fewer differences than n (or n under MIN_SEEDS) judges none."""
    d = np.asarray([x for x in diffs if math.isfinite(x)], dtype=float)
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        per = len(d) // n if n >= MIN_SEEDS else 0
        row: dict[str, Any] = {"n": n, "regroupings": 0, "groups": 0, "false": 0, "rate": math.nan, "se": math.nan}
        if per:
            reps = -(-draws // per)
            shuffled = rng.permuted(np.tile(d, (reps, 1)), axis=1)[:, :per * n]
            if flip:
                shuffled = shuffled * rng.choice((-1.0, 1.0), size=shuffled.shape)
            false = false_verdicts(shuffled.reshape(reps * per, n), alpha).reshape(reps, per)
            rates = false.mean(axis=1)
            se = float(rates.std(ddof=1) / math.sqrt(reps)) if reps > 1 else math.nan
            row.update(regroupings=reps, groups=reps * per, false=int(false.sum()), rate=float(false.mean()), se=se)
        out.append(row)
    return out
