"""The paper's claims as data, and their test on a results table.

A claim compares two variants that differ only in the claim's axes (e.g. bins {1} vs {1,2,3,6} with the same
pooling, reduction, backbone, recipe). Each such pair gets the paired difference over the seeds on which both
trained, its interval at the verdict's level, image-level and two-level intervals, P(improvement) on those seeds,
a Holm-adjusted p-value and a verdict from the study-level rule in study.results.stats, the paper's difference for
the same pair, what the row could detect and what the paper's difference would need (study.results.power), and
each variant's "did not train" count with the comparison of the two stall rates, the row's size reading against the
study's smallest difference of interest m, whether its interval excludes the paper's difference, and whether both
variants were in the study file before its runs began: one ClaimRow.

What a verdict estimates is fixed before the data (docs/statistics.md): the mean paired difference over the seeds
on which both variants' runs trained (the training check of each run's record, which reads the training loss,
never the metric); a run that did not train is an outcome of its own, counted per variant and compared between
the two variants of a row by Fisher's exact test, Holm over the study's rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from study.results import axes
from study.results.axes import (
    AUGMENT,
    AUX_WEIGHT,
    BACKBONE,
    BINS,
    DEPTH,
    POOL,
    PPM,
    RECIPE_COLUMN,
    REDUCTION,
    Axis,
    typed_axes,
)
from study.results.images import ImageBootstrap, image_interval, two_level_interval
from study.results.power import plan as power_plan
from study.results.sequential import SequentialPlan
from study.results.stats import ALPHA, Verdict, decide, holm, paired_improvement, rule_text, wilson
from study.results.table import trained_mask

PAPER_DIR = Path(__file__).resolve().parents[2] / "configs" / "paper"
Axes = dict[Axis, Any]  # one variant's typed axis values


@dataclass(frozen=True)
class Claim:
    name: str
    varying: tuple[Axis, ...]  # axes allowed to differ between the two variants
    better: Callable[[Axes, Axes], bool]  # is the first variant the one the paper says is better?
    paper_source: str  # where the paper makes it
    pyramid_axes: bool = False  # every pyramid-only axis (study.results.axes) may differ too

    def may_differ(self) -> set[Axis]:
        """The axes two variants of one row may differ in (read when asked, so a new axis joins at once)."""
        return set(self.varying) | ({a for a in axes.AXES if a.pyramid_only} if self.pyramid_axes else set())


NAN = math.nan


@dataclass(frozen=True)
class ClaimRow:
    """One claim row: two variants that differ only in a claim's axes, judged by the study's rule. Differences and
    intervals in points (mIoU), nan where a statistic cannot be computed (too few seeds, no per-image counts)."""

    claim: str
    better: str  # the variant the paper says is better
    worse: str
    verdict: Verdict  # words such as "supported" or "equivalent within ±0.5" are read into a Verdict
    size: str = ""  # the size reading against m (size_reading); "" without m or interval
    n: int = 0  # the seeds the shown look used
    seeds: tuple[int, ...] = ()
    diff: float = NAN  # mean paired difference better - worse
    sd: float = NAN  # sd of the paired differences
    df: float = NAN
    ci_low: float = NAN  # the t-interval at the level Holm tested the row at (`confidence`)
    ci_high: float = NAN
    confidence: float = NAN
    image_ci_low: float = NAN  # evaluation images resampled (study.results.images)
    image_ci_high: float = NAN
    two_level_ci_low: float = NAN  # seeds and images resampled
    two_level_ci_high: float = NAN
    p_value: float = NAN  # the row's p (over its looks) before Holm
    p_adjusted: float = NAN
    prob_improvement: float = NAN  # share of seeds on which better scores higher, with its Wilson interval
    prob_improvement_low: float = NAN
    prob_improvement_high: float = NAN
    margin: float | None = None  # the study's equivalence margin
    look: int = 1  # the look shown, of `looks` tested and `planned_looks` planned (seeds on demand)
    looks: int = 1
    planned_looks: int = 1
    untrained: dict[str, tuple[int, int, float, float]] = field(default_factory=dict)  # variant: (k, n, lo, hi)
    paper_diff: float = NAN
    paper_source: str = ""
    metric: str = "miou"
    rule: str = ""  # the rule in words (study.results.stats.rule_text)
    noise_sd_low: float = NAN  # study.results.power.plan: the sd's interval, what the row detects, what the
    noise_sd_high: float = NAN  # paper's difference would need
    detectable_low: float = NAN
    detectable_high: float = NAN
    seeds_low: float = NAN
    seeds_high: float = NAN
    margin_seeds_low: float = NAN  # the seeds that detect a difference of m, over the same range
    margin_seeds_high: float = NAN
    paper_excluded: bool | None = None  # the interval excludes the paper's Δ (None: no paper Δ or no interval)
    stall_p: float = NAN  # Fisher's exact p of the two variants' did-not-train counts, Holm-adjusted over the rows
    stalls_more: str = ""  # the variant that stalls more often, where that comparison is decided
    added_after: int | None = None  # runs finished when a variant of this row entered the study file (None: before any)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict.read(self.verdict))

    @property
    def label(self) -> str:
        """The verdict in words ("equivalent within ±m" names the study's m)."""
        return self.verdict.label(self.margin)

    @property
    def key(self) -> tuple[str, str, str]:
        """(claim, better, worse): the row's identity across studies and seed groups."""
        return self.claim, self.better, self.worse


def _depth_rank(axes: Axes) -> tuple[int, int]:
    """(the backbone name's number, blocks over all stages): ResNet-50 < ResNet-101, and more blocks deeper."""
    digits = "".join(ch for ch in axes[BACKBONE] if ch.isdigit())
    return (int(digits) if digits else 0, sum(axes[DEPTH] or ()))


CLAIMS = (
    Claim("PPM beats the FCN baseline", (PPM, BINS),
          lambda a, b: a[PPM] and a[POOL] != "none" and not b[PPM], "Table 1, Table 4", pyramid_axes=True),
    Claim("the pyramid beats the capacity-matched FCN", (POOL,),
          lambda a, b: a[POOL] in ("avg", "max") and b[POOL] == "none", "a control (no paper row)"),
    Claim("B1236 beats B1", (BINS,), lambda a, b: a[BINS] == (1, 2, 3, 6) and b[BINS] == (1,), "Table 1"),
    Claim("AVE beats MAX", (POOL,), lambda a, b: a[POOL] == "avg" and b[POOL] == "max", "Table 1"),
    Claim("DR helps", (REDUCTION,), lambda a, b: a[REDUCTION] is True and b[REDUCTION] is False, "Table 1"),
    Claim("aux 0.4 beats none", (AUX_WEIGHT,), lambda a, b: a[AUX_WEIGHT] == 0.4 and b[AUX_WEIGHT] == 0,
          "Table 2"),
    Claim("deeper is better", (DEPTH, BACKBONE),
          lambda a, b: (a[BACKBONE], a[DEPTH]) != (b[BACKBONE], b[DEPTH]) and _depth_rank(a) > _depth_rank(b),
          "Table 3"),
    Claim("augmentation helps", (AUGMENT,), lambda a, b: not b[AUGMENT] and bool(a[AUGMENT]), "Table 4"),
)


def load_paper_table(name: str | None, paper_dir: Path = PAPER_DIR) -> pd.DataFrame | None:
    """configs/paper/<name>.csv (variant, miou, pixel_acc[, ...] in percent, and the axis columns that say which
    model each row is, as the results table prints them), or None."""
    if not name:
        return None
    path = paper_dir / f"{name}.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    for column in table.columns:
        if column not in {a.column for a in axes.AXES} and column != "variant":
            table[column] = table[column].astype(float)
    return table


def match_paper(paper: pd.DataFrame | None, df: pd.DataFrame) -> dict[str, str]:
    """{study variant: paper row}: matched on the values of the axes the paper table states (columns named as the
    results table's), whatever the variants are called; a paper table without axis columns matches by name."""
    if paper is None:
        return {}
    columns = [a.column for a in axes.AXES if a.column in paper.columns]
    first = df.drop_duplicates("variant", keep="first")
    if not columns:
        return {v: v for v in first["variant"] if v in set(paper["variant"])}
    out = {}
    for _, row in first.iterrows():
        hits = [p["variant"] for _, p in paper.iterrows() if all(str(row[c]) == str(p[c]) for c in columns)]
        if len(hits) == 1:
            out[row["variant"]] = hits[0]
    return out


def variant_axes(df: pd.DataFrame) -> dict[str, tuple[Axes, Any]]:
    """{variant: (typed axes, recipe hash)} from each variant's first row; the recipe is None in older tables."""
    first = df.drop_duplicates("variant", keep="first")
    return {row["variant"]: (typed_axes(row), row.get(RECIPE_COLUMN)) for _, row in first.iterrows()}


def find_pairs(df: pd.DataFrame, claim: Claim) -> list[tuple[str, str]]:
    """(better, worse) variant pairs that differ only in the claim's axes, in table order.

    Both variants must share their recipe (every hashed config key that is no axis): variants that differ in a
    config key no axis reads are never paired.
    """
    axes = variant_axes(df)
    names = list(axes)
    varying = claim.may_differ()
    pairs = []
    for a in names:
        ax_a, recipe_a = axes[a]
        for b in names:
            if a == b:
                continue
            ax_b, recipe_b = axes[b]
            same = recipe_a == recipe_b and all(ax_a[k] == ax_b.get(k) for k in ax_a if k not in varying)
            if same and claim.better(ax_a, ax_b):
                pairs.append((a, b))
    return pairs


BOUNDED = ("miou", "miou_present", "pixel_acc", "mean_acc", "mean_acc_present")  # fractions in [0, 1]
FINAL = ("completed", "failed")  # a run with one of these statuses has ended: its look can count


def judge_claims(df: pd.DataFrame, paper: pd.DataFrame | None = None, metric: str = "miou",
                 images: ImageBootstrap | None = None, alpha: float = ALPHA,
                 plan: SequentialPlan | None = None, margin: float | None = None,
                 exclude_untrained: bool = True, added_after: dict[str, int] | None = None) -> list[ClaimRow]:
    """Every claim the study can test: one row per variant pair, differences in points.

    The rule is `study.results.stats.decide` over all rows together (each row's `rule` describes it), on the runs
    that trained (the estimand fixed in docs/statistics.md); `exclude_untrained=False` counts every completed run
    (the sensitivity analysis beside the verdicts). Each variant's "did not train: k of n" count comes along with
    its Wilson interval, and each row compares its two variants' counts (`stall_rows`). `added_after`
    ({variant: runs finished when the study file first named it}, study.registration) marks the rows of a variant
    that was not registered before the runs began. `images`
    (study.results.images.bootstrap_mious) adds the image-level and two-level intervals; `plan` (seeds added in
    rounds) makes the rule test at the plan's looks, each with its share of alpha. With `margin` (points, fixed in
    the study file), a row the rule leaves inconclusive whose interval lies inside (-margin, margin) reads
    "equivalent within ±margin": the same interval, at the same Holm level, excludes every difference of the
    margin's size (two one-sided tests at that level).
    """
    ended = df[df["status"].isin(FINAL)]
    done = df[df["status"] == "completed"]
    ok = done[trained_mask(done).to_numpy(dtype=bool)] if exclude_untrained else done
    by_variant = {v: {int(s): float(x) for s, x in zip(g["seed"], g[metric], strict=True)}
                  for v, g in ok.groupby("variant", sort=False)}
    paper_row = dict(zip(paper["variant"], paper["miou"], strict=True)) if paper is not None else {}
    paper_miou = {v: paper_row[name] for v, name in match_paper(paper, df).items()}
    found = [(claim, better, worse) for claim in CLAIMS for better, worse in find_pairs(df, claim)]
    names = list(dict.fromkeys(v for _, b, w in found for v in (b, w)))
    seeds = list(plan.seeds) if plan is not None else sorted({int(s) for s in df["seed"]})
    y = np.full((len(names), len(seeds)), np.nan)
    finished = np.zeros(y.shape, dtype=bool)
    for i, v in enumerate(names):
        ran = {int(s) for s in ended.loc[ended["variant"] == v, "seed"]}
        for j, s in enumerate(seeds):
            y[i, j] = by_variant.get(v, {}).get(s, np.nan)
            finished[i, j] = s in ran
    scale = 100.0 if metric in BOUNDED else 1.0
    looks = plan.looks if plan is not None else None
    decided = decide(scale * y, [(names.index(b), names.index(w)) for _, b, w in found], alpha, looks=looks,
                     spend=plan.shares if plan is not None else None, finished=finished)
    m = sum(math.isfinite(d["p_adjusted"]) for d in decided)
    rule = rule_text(m, alpha, looks or (), plan.shares if plan is not None else (),
                     runs="the seeds on which both runs trained" if exclude_untrained else "every completed run")
    boot = images.mious if images is not None else {}
    stalls = stall_rows(done, found, alpha)
    added = added_after or {}
    rows = []
    for (claim, better, worse), d in zip(found, decided, strict=True):
        a, b = names.index(better), names.index(worse)
        used = [seeds[c] for c in d["columns"]]
        diffs = scale * (y[a, d["columns"]] - y[b, d["columns"]])
        lo, hi = d["ci_low"], d["ci_high"]
        if scale == 100.0:  # a difference of two values in [0, 100] lies in [-100, 100]
            lo, hi = max(-100.0, lo), min(100.0, hi)
        img = image_interval(boot, better, worse, used) if metric == "miou" else (math.nan, math.nan)
        two = two_level_interval(boot, better, worse, used) if metric == "miou" else (math.nan, math.nan)
        paper_diff = (paper_miou[better] - paper_miou[worse]
                      if metric == "miou" and better in paper_miou and worse in paper_miou else math.nan)
        imp, imp_lo, imp_hi = paired_improvement(diffs)
        share = plan.shares[d["look"] - 1] if plan is not None else 1.0
        design = power_plan(d["sd"], d["n"], level=alpha / max(m, 1) * share, planning_level=alpha / max(m, 1),
                            paper_diff=paper_diff, margin=margin)
        late = [added[v] for v in (better, worse) if v in added]
        rows.append(ClaimRow(
            claim=claim.name, better=better, worse=worse, n=d["n"], seeds=tuple(used), diff=d["diff"], sd=d["sd"],
            df=d["df"], ci_low=lo, ci_high=hi, confidence=d["confidence"], image_ci_low=img[0],
            image_ci_high=img[1], two_level_ci_low=two[0], two_level_ci_high=two[1], p_value=d["p_value"],
            p_adjusted=d["p_adjusted"], prob_improvement=imp, prob_improvement_low=imp_lo,
            prob_improvement_high=imp_hi, verdict=equivalence(d["verdict"], lo, hi, margin), margin=margin,
            look=d["look"], looks=d["looks"], planned_looks=d["planned_looks"],
            untrained={v: _untrained(done, v) for v in (better, worse)}, paper_diff=paper_diff,
            paper_source=claim.paper_source, metric=metric, rule=rule, size=size_reading(lo, hi, margin),
            paper_excluded=excludes(lo, hi, paper_diff), added_after=min(late) if late else None,
            **stalls[(better, worse)], **design))
    return rows


def row_summary(c: ClaimRow) -> dict[str, Any]:
    """A claim row as plain JSON values (nan as None), the fields a script needs to check a report: claim, pair,
    seeds, Δ, interval and its level, p before and after Holm, verdict, size reading and m, the paper's Δ and
    whether the interval excludes it, the detectable Δ, the seeds the paper's Δ would need, stalls, registration."""
    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return {"claim": c.claim, "better": c.better, "worse": c.worse, "seeds": list(c.seeds), "n": c.n,
            "diff": num(c.diff), "sd": num(c.sd), "ci_low": num(c.ci_low), "ci_high": num(c.ci_high),
            "level": num(c.confidence), "p": num(c.p_value), "p_holm": num(c.p_adjusted), "verdict": c.label,
            "size": c.size, "m": c.margin, "paper_diff": num(c.paper_diff), "paper_excluded": c.paper_excluded,
            "detectable_low": num(c.detectable_low), "detectable_high": num(c.detectable_high),
            "seeds_for_paper_low": num(c.seeds_low), "seeds_for_paper_high": num(c.seeds_high),
            "seeds_for_m_low": num(c.margin_seeds_low), "seeds_for_m_high": num(c.margin_seeds_high),
            "did_not_train": {v: [k, n] for v, (k, n, *_) in c.untrained.items()}, "stall_p_holm": num(c.stall_p),
            "stalls_more": c.stalls_more or None, "added_after_runs": c.added_after, "metric": c.metric}


def size_reading(lo: float, hi: float, margin: float | None) -> str:
    """The row's interval [lo, hi] (better - worse) read against the smallest difference of interest m:
    better (worse) by at least m where it clears +m (-m); by less than m where it excludes 0 and m; by an unknown
    amount where it excludes 0 only; equivalent within ±m inside (-m, m); not better (worse) by m or more where
    it excludes only one of ±m; else inconclusive. "" without m or interval."""
    if not margin or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    m = f"{margin:g}"
    if lo >= margin:
        return f"better by at least {m}"
    if hi <= -margin:
        return f"worse by at least {m}"
    if lo > 0:
        return f"better by less than {m}" if hi < margin else "better by an unknown amount"
    if hi < 0:
        return f"worse by less than {m}" if lo > -margin else "worse by an unknown amount"
    if -margin < lo and hi < margin:
        return f"equivalent within ±{m}"
    if hi < margin:
        return f"not better by {m} or more"
    if lo > -margin:
        return f"not worse by {m} or more"
    return "inconclusive"


def excludes(lo: float, hi: float, value: float) -> bool | None:
    """Whether [lo, hi] leaves `value` out (None where either is missing)."""
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(value)):
        return None
    return bool(value < lo or value > hi)


def stall_rows(done: pd.DataFrame, found: list[tuple[Claim, str, str]], alpha: float = ALPHA
               ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (better, worse): Fisher's exact two-sided p of the two variants' did-not-train counts over their completed
    runs, Holm-adjusted over the rows where some run did not train (nan elsewhere), and the variant that stalls
    more often where the adjusted p is below alpha: a stall rate judged as an outcome of its own."""
    counts = {v: _untrained(done, v)[:2] for _, b, w in found for v in (b, w)}
    p = []
    for _, better, worse in found:
        (kb, nb), (kw, nw) = counts[better], counts[worse]
        p.append(float(sps.fisher_exact([[kb, nb - kb], [kw, nw - kw]])[1]) if (kb or kw) and nb and nw else math.nan)
    adjusted = holm(p)
    out = {}
    for (_, better, worse), q in zip(found, adjusted, strict=True):
        (kb, nb), (kw, nw) = counts[better], counts[worse]
        more = (better if kb / nb > kw / nw else worse) if math.isfinite(q) and q < alpha else ""
        out[(better, worse)] = {"stall_p": q, "stalls_more": more}
    return out


def equivalence(verdict: Verdict, lo: float, hi: float, margin: float | None) -> Verdict:
    """The rule's verdict, or EQUIVALENT for an inconclusive row whose interval lies inside ±m."""
    if margin and verdict is Verdict.INCONCLUSIVE and -margin < lo and hi < margin:
        return Verdict.EQUIVALENT
    return verdict


def _untrained(done: pd.DataFrame, variant: str) -> tuple[int, int, float, float]:
    """(k, n, low, high): k of the variant's n completed runs did not train, with the 95% Wilson interval."""
    runs = done[done["variant"] == variant]
    k = int((~trained_mask(runs).to_numpy(dtype=bool)).sum())
    return (k, len(runs), *wilson(k, len(runs)))
