"""The paper's claims as data, and their test on a results table.

A claim compares two variants that differ only in the claim's axes (e.g. bins {1} vs {1,2,3,6} with the same
pooling, reduction, backbone, recipe). Each such pair gets the paired difference over the seeds on which both
trained, its interval at the verdict's level, image-level and two-level intervals, P(improvement) on those seeds,
a Holm-adjusted p-value and a verdict from the study-level rule in study.results.stats, the paper's difference for
the same pair, what the row could detect and what the paper's difference would need (study.results.power), and
each variant's "did not train" count: one ClaimRow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
from study.results.stats import ALPHA, decide, paired_improvement, rule_text, wilson
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
    verdict: str  # supported | contradicted | inconclusive | too few seeds | equivalent within ±m
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
                 exclude_untrained: bool = False) -> list[ClaimRow]:
    """Every claim the study can test: one row per variant pair, differences in points.

    The rule is `study.results.stats.decide` over all rows together (each row's `rule` describes it), on every completed
    run; `exclude_untrained` leaves out the runs the training check flagged (the sensitivity analysis beside the
    verdicts). Each variant's "did not train: k of n" count comes along with its Wilson interval. `images`
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
                     runs="the runs that trained" if exclude_untrained else "every completed run")
    boot = images.mious if images is not None else {}
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
                            paper_diff=paper_diff)
        rows.append(ClaimRow(
            claim=claim.name, better=better, worse=worse, n=d["n"], seeds=tuple(used), diff=d["diff"], sd=d["sd"],
            df=d["df"], ci_low=lo, ci_high=hi, confidence=d["confidence"], image_ci_low=img[0],
            image_ci_high=img[1], two_level_ci_low=two[0], two_level_ci_high=two[1], p_value=d["p_value"],
            p_adjusted=d["p_adjusted"], prob_improvement=imp, prob_improvement_low=imp_lo,
            prob_improvement_high=imp_hi, verdict=equivalence(d["verdict"], lo, hi, margin), margin=margin,
            look=d["look"], looks=d["looks"], planned_looks=d["planned_looks"],
            untrained={v: _untrained(done, v) for v in (better, worse)}, paper_diff=paper_diff,
            paper_source=claim.paper_source, metric=metric, rule=rule, **design))
    return rows


def equivalence(verdict: str, lo: float, hi: float, margin: float | None) -> str:
    """The rule's verdict, or "equivalent within ±m" for an inconclusive row whose interval lies inside ±m."""
    if margin and verdict == "inconclusive" and -margin < lo and hi < margin:
        return f"equivalent within ±{margin:g}"
    return verdict


def _untrained(done: pd.DataFrame, variant: str) -> tuple[int, int, float, float]:
    """(k, n, low, high): k of the variant's n completed runs did not train, with the 95% Wilson interval."""
    runs = done[done["variant"] == variant]
    k = int((~trained_mask(runs).to_numpy(dtype=bool)).sum())
    return (k, len(runs), *wilson(k, len(runs)))
