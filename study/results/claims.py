"""The paper's claims as data, and their test on a results table.

A claim compares two variants that differ only in the claim's axes (e.g. bins {1} vs {1,2,3,6} with the same
pooling, reduction, backbone, recipe). Each such pair gets the paired difference over shared seeds, a seed
interval, an image-level interval, P(improvement), a Holm-adjusted p-value and a verdict from the study-level
rule in study.results.stats, the paper's difference for the same pair and, when inconclusive, the seeds needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.results.axes import (
    AUGMENT,
    AUX_WEIGHT,
    AXES,
    BACKBONE,
    BINS,
    BRANCH,
    DEPTH,
    POOL,
    PPM,
    RECIPE_COLUMN,
    REDUCTION,
    Axis,
    typed_axes,
)
from study.results.images import image_interval
from study.results.stats import ALPHA, RULE, decide, prob_improvement

PAPER_DIR = Path(__file__).resolve().parents[2] / "configs" / "paper"
Axes = dict[Axis, Any]  # one variant's typed axis values


@dataclass(frozen=True)
class Claim:
    name: str
    varying: tuple[Axis, ...]  # axes allowed to differ between the two variants
    better: Callable[[Axes, Axes], bool]  # is the first variant the one the paper says is better?
    paper_source: str  # where the paper makes it


def _depth_rank(axes: Axes) -> tuple[int, int]:
    """(the backbone name's number, blocks over all stages): ResNet-50 < ResNet-101, and more blocks deeper."""
    digits = "".join(ch for ch in axes[BACKBONE] if ch.isdigit())
    return (int(digits) if digits else 0, sum(axes[DEPTH] or ()))


CLAIMS = (
    Claim("PPM beats the FCN baseline", (PPM, BINS, POOL, REDUCTION, BRANCH),
          lambda a, b: a[PPM] and not b[PPM], "Table 1, Table 4"),
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
    """configs/paper/<name>.csv (variant, miou, pixel_acc[, ...], percentages), or None."""
    if not name:
        return None
    path = paper_dir / f"{name}.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, comment="#")


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
    pairs = []
    for a in names:
        ax_a, recipe_a = axes[a]
        for b in names:
            if a == b:
                continue
            ax_b, recipe_b = axes[b]
            same = recipe_a == recipe_b and all(ax_a[k] == ax_b[k] for k in AXES
                                                if k not in claim.varying and k in ax_a)
            if same and claim.better(ax_a, ax_b):
                pairs.append((a, b))
    return pairs


BOUNDED = ("miou", "miou_present", "pixel_acc", "mean_acc", "mean_acc_present")  # fractions in [0, 1]


def judge_claims(df: pd.DataFrame, paper: pd.DataFrame | None = None, metric: str = "miou",
                 image_mious: Mapping[tuple[str, int], np.ndarray] | None = None,
                 alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every claim the study can test: one row per variant pair, differences in points.

    The rule is `study.results.stats.decide` over all rows together (RULE describes it; row["rule"] carries
    it). image_mious ({(variant, seed): resampled mIoUs}, study.results.images) adds the image-level interval.
    """
    done = df[df["status"] == "completed"]
    by_variant = {v: {int(s): float(x) for s, x in zip(g["seed"], g[metric], strict=True)}
                  for v, g in done.groupby("variant", sort=False)}
    paper_miou = dict(zip(paper["variant"], paper["miou"], strict=True)) if paper is not None else {}
    found = [(claim, better, worse) for claim in CLAIMS for better, worse in find_pairs(df, claim)]
    names = list(dict.fromkeys(v for _, b, w in found for v in (b, w)))
    seeds = sorted({s for v in names for s in by_variant.get(v, {})})
    y = np.full((len(names), len(seeds)), np.nan)
    for i, v in enumerate(names):
        for j, s in enumerate(seeds):
            y[i, j] = by_variant.get(v, {}).get(s, np.nan)
    scale = 100.0 if metric in BOUNDED else 1.0
    decided = decide(scale * y, [(names.index(b), names.index(w)) for _, b, w in found], alpha)
    rule = RULE.format(m=sum(math.isfinite(d["p_adjusted"]) for d in decided), alpha=alpha)
    rows = []
    for (claim, better, worse), d in zip(found, decided, strict=True):
        shared_seeds = sorted(s for s in by_variant.get(better, {}) if s in by_variant.get(worse, {})
                              and math.isfinite(by_variant[better][s]) and math.isfinite(by_variant[worse][s]))
        lo, hi = d["ci_low"], d["ci_high"]
        if scale == 100.0:  # a difference of two values in [0, 100] lies in [-100, 100]
            lo, hi = max(-100.0, lo), min(100.0, hi)
        img = image_interval(image_mious or {}, better, worse, shared_seeds) if metric == "miou" \
            else (math.nan, math.nan)
        paper_diff = (paper_miou[better] - paper_miou[worse]
                      if metric == "miou" and better in paper_miou and worse in paper_miou else math.nan)
        rows.append({"claim": claim.name, "better": better, "worse": worse, "n": d["n"], "diff": d["diff"],
                     "ci_low": lo, "ci_high": hi, "image_ci_low": img[0], "image_ci_high": img[1],
                     "p_value": d["p_value"], "p_adjusted": d["p_adjusted"],
                     "prob_improvement": prob_improvement(list(by_variant.get(better, {}).values()),
                                                          list(by_variant.get(worse, {}).values())),
                     "verdict": d["verdict"], "seeds_needed": d["seeds_needed"], "paper_diff": paper_diff,
                     "paper_source": claim.paper_source, "pooled": d["pooled"], "metric": metric, "rule": rule})
    return rows
