"""The verdict table: the claim rows (study.results.claims) printed column by column, in a fixed order.

Each column names the keys it reads and is shown when the rows carry them (and some row has a value), so rows
with more or fewer statistics still print: the core columns in the table a reader sees first, the rest folded
under it, and any scalar key no column knows at the end of the folded table under its own name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from study.report import plots
from study.report.blocks import Block, ci, decimals, fmt, own_ci, signed
from study.results.claims import CLAIMS
from study.results.images import RESAMPLES, ImageBootstrap
from study.results.stats import MIN_SEEDS

Row = Mapping[str, Any]
FOLDED_COLUMNS = 5  # columns per folded table beside the claim and pair, so each fits a laptop's page
MANY_SEEDS = 10000  # a seeds figure at or beyond this prints as "> 10000"


def row_digits(c: Row) -> int:
    """Decimals for a row's difference and intervals: by the sd of its paired differences, else its half-width."""
    sd = c.get("sd", math.nan)
    if isinstance(sd, (int, float)) and math.isfinite(sd):
        return decimals(sd)
    lo, hi = c.get("ci_low", math.nan), c.get("ci_high", math.nan)
    return decimals((hi - lo) / 2) if math.isfinite(lo) and math.isfinite(hi) else 2


def level_label(c: Row) -> str:
    conf = c.get("confidence", 0.95)
    return f"{100 * conf:.4g}%" if isinstance(conf, (int, float)) and math.isfinite(conf) else "95%"


def _p(v: Any) -> str:
    if not isinstance(v, (int, float)) or math.isnan(v):
        return ""
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _seeds(v: Any) -> str:
    if not isinstance(v, (int, float)) or math.isnan(v):
        return ""
    return f"> {MANY_SEEDS}" if math.isinf(v) or v >= MANY_SEEDS else str(int(v))


def _sig(v: float) -> str:
    """Two significant digits, never in exponent form."""
    if not math.isfinite(v):
        return ""
    return f"{v:.{max(0, 1 - math.floor(math.log10(abs(v))))}f}" if v else "0"


def _range(lo: Any, hi: Any, show: Callable[[Any], str]) -> str:
    a, b = show(lo), show(hi)
    return a if a == b else f"{a} to {b}" if a and b else a or b


def _improvement(c: Row) -> str:
    v = c["prob_improvement"]
    if not isinstance(v, (int, float)) or math.isnan(v):
        return ""
    lo, hi = c.get("prob_improvement_low", math.nan), c.get("prob_improvement_high", math.nan)
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if isinstance(lo, float) and math.isfinite(lo) else f"{v:.2f}"


def _untrained(c: Row) -> str:
    parts = []
    for variant, counts in (c.get("untrained") or {}).items():
        k, n, *interval = counts
        if k:
            parts.append(f"{variant}: {k} of {n}" + (f" {ci(100 * interval[0], 100 * interval[1], 0)}%"
                                                     if len(interval) == 2 else ""))
    return "; ".join(parts)


def _seeds_cell(c: Row, rows: Sequence[Row]) -> str:
    if max((r.get("planned_looks") or 1) for r in rows) > 1:
        return f"{c['n']} (look {c.get('look')} of {c.get('planned_looks')})"
    return str(c["n"])


@dataclass(frozen=True)
class Column:
    header: str
    keys: tuple[str, ...]  # shown when the rows carry these keys
    cell: Callable[[Row, Sequence[Row]], str]
    core: bool = False  # in the table a reader sees first (else folded under it)


COLUMNS = (
    Column("claim", ("claim",), lambda c, _: str(c["claim"]), core=True),
    Column("better vs worse", ("better", "worse"), lambda c, _: f"{c['better']} vs {c['worse']}", core=True),
    Column("seeds", ("n",), _seeds_cell, core=True),
    Column("Δ mIoU", ("diff",), lambda c, _: signed(c["diff"], row_digits(c)), core=True),
    Column("interval", ("ci_low", "ci_high"), lambda c, _: ci(c["ci_low"], c["ci_high"], row_digits(c)),
           core=True),
    Column("verdict", ("verdict",), lambda c, _: str(c["verdict"]), core=True),
    Column("paper Δ", ("paper_diff",), lambda c, _: signed(c["paper_diff"]), core=True),
    Column("P(improvement)", ("prob_improvement",), lambda c, _: _improvement(c)),
    Column("p (Holm)", ("p_adjusted",), lambda c, _: _p(c["p_adjusted"])),
    Column("noise: sd of Δ (df)", ("sd", "df"),
           lambda c, _: f"{_sig(c['sd'])} ({c['df']})" if math.isfinite(c["sd"]) else ""),
    Column("level", ("confidence",), lambda c, _: level_label(c) if math.isfinite(c["confidence"]) else ""),
    Column("detectable Δ (80% power)", ("detectable_low", "detectable_high"),
           lambda c, _: _range(c["detectable_low"], c["detectable_high"], _sig)),
    Column("seeds for the paper's Δ", ("seeds_low", "seeds_high"),
           lambda c, _: _range(c["seeds_low"], c["seeds_high"], _seeds)),
    Column("seeds needed", ("seeds_needed",), lambda c, _: _seeds(c["seeds_needed"])),
    Column("two-level 95% CI", ("two_level_ci_low", "two_level_ci_high"),
           lambda c, _: own_ci(c["two_level_ci_low"], c["two_level_ci_high"])),
    Column("image-level 95% CI", ("image_ci_low", "image_ci_high"),
           lambda c, _: own_ci(c["image_ci_low"], c["image_ci_high"])),
    Column("did not train [95%]", ("untrained",), lambda c, _: _untrained(c)),
)
# keys that columns or the texts read, or that are not for the table
KNOWN = {k for col in COLUMNS for k in col.keys} | {
    "look", "looks", "planned_looks", "prob_improvement_low", "prob_improvement_high", "p_value", "pooled",
    "metric", "rule", "paper_source", "seeds", "columns", "noise_sd_low", "noise_sd_high", "margin"}


def _fallback(rows: Sequence[Row]) -> list[Column]:
    """A column for each scalar key that no column reads, in the order the first row has them."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in KNOWN
            and all(isinstance(r.get(k), (int, float, str, bool)) for r in rows)]
    return [Column(k, (k,), lambda c, _, k=k: fmt(c[k])) for k in keys]


def verdict_tables(claims: Sequence[Row]) -> list[Block]:
    """The core table, and the other columns folded under it (both keyed by claim and pair)."""
    shown = []
    # Holm tests rows at different levels: one level in the header only when every row has it
    levels = {level_label(c) for c in claims}
    for col in [*COLUMNS, *_fallback(claims)]:
        if all(k in c for c in claims for k in col.keys):
            cells = [col.cell(c, claims) for c in claims]
            if any(cells):
                header = col.header
                if header == "interval":
                    header = "seed 95% CI" if "confidence" not in claims[0] else \
                        f"interval ({next(iter(levels))})" if len(levels) == 1 else "interval (at its row's level)"
                if header == "level" and len(levels) > 1:
                    col = replace(col, core=True)
                shown.append((col, header, cells))
    core = [(h, cells) for col, h, cells in shown if col.core]
    more = [(h, cells) for col, h, cells in shown if not col.core]
    key = [(h, cells) for h, cells in core if h in ("claim", "better vs worse")]
    blocks = [Block("table", headers=[h for h, _ in core], rows=[list(r) for r in zip(*(c for _, c in core), strict=True)])]
    for start in range(0, len(more), FOLDED_COLUMNS):  # a wide remainder split, each part keyed like the core
        part = more[start:start + FOLDED_COLUMNS]
        cols = key + part
        blocks.append(Block("table", headers=[h for h, _ in cols],
                            rows=[list(r) for r in zip(*(c for _, c in cols), strict=True)],
                            fold="More per claim: " + ", ".join(h for h, _ in part)))
    return blocks


def sensitivity_text(claims: Sequence[Row], sensitivity: Sequence[Row]) -> str:
    """Which verdicts move when the runs that did not train are left out (the rows in the same order)."""
    moved = [f"{c['claim']}, {c['better']} vs {c['worse']}: {c['verdict']} -> {s['verdict']} "
             f"(Δ {signed(s['diff'], row_digits(s))}, {s['n']} seeds)"
             for c, s in zip(claims, sensitivity, strict=True) if c["verdict"] != s["verdict"]]
    head = "Sensitivity (the runs that did not train left out, the same rule): "
    return head + ("; ".join(moved) + "." if moved else "no verdict moves.")


def claim_blocks(claims: Sequence[Row], fig_dir: Path, images: ImageBootstrap | None = None,
                 sensitivity: Sequence[Row] | None = None) -> list[Block]:
    """Heading, the verdict table (core, then folded details), the forest plot, the rule, what the intervals answer;
    `sensitivity` (the same rows judged without the runs that did not train) adds the verdicts that would move."""
    blocks = [Block("heading", "The paper's claims: verdicts")]
    if not claims:
        return blocks + [Block("text", "No pair of variants in this study isolates one of the paper's claims.")]
    n_max = max(c["n"] for c in claims)
    if n_max < MIN_SEEDS:
        blocks.append(Block("text", f"Too few seeds for a verdict: at least {MIN_SEEDS} shared seeds are needed "
                                    f"(this study has {n_max}). Differences are shown without one."))
    blocks += verdict_tables(claims)
    file = plots.forest(list(claims), fig_dir / "claims_forest.png")
    if file:
        blocks.append(Block("figure", "Claims: Δ with its interval at the verdict's level (black), two-level "
                                      "interval (grey), image-level interval (blue), paper's Δ (red x), 0 dashed",
                            items=[f"figures/{file}"]))
    blocks.append(Block("text", "Rule: " + str(claims[0].get("rule", ""))))
    untested = [c.name for c in CLAIMS if c.name not in {r["claim"] for r in claims}]
    if untested:
        blocks.append(Block("text", "No pair of variants in this study isolates: " + "; ".join(untested) + "."))
    margin = claims[0].get("margin")
    if margin:
        blocks.append(Block("text", f"Equivalence: a row the rule leaves inconclusive whose interval (at the same "
                                    f"level) lies inside ±{margin:g} mIoU points, a margin fixed in the study file "
                                    f"before it ran, reads \"equivalent within ±{margin:g}\": every difference of "
                                    f"that size is excluded."))
    if any(k for c in claims for k, *_ in (c.get("untrained") or {}).values()):
        blocks.append(Block("text", "Did not train: runs flagged in their record as never leaving the training "
                                    "plateau. They count in the verdicts, as every completed run does; the count "
                                    "of runs that did not train (of the variant's completed runs) stands beside each "
                                    "row, with its 95% Wilson interval, in percent."))
    if sensitivity is not None:
        blocks.append(Block("text", sensitivity_text(claims, sensitivity)))
    blocks.append(Block("text", _image_text(images)))
    return blocks


def _image_text(images: ImageBootstrap | None) -> str:
    where = "" if images is not None and images.mious else \
        f" Empty here: {images.note if images is not None else 'no per-image counts'}."
    grouping = images.grouping if images is not None else "each image"
    return ("Image-level interval: the evaluation images resampled with replacement, in groups "
            f"({grouping}; {RESAMPLES} resamples, fixed seed, the same groups for both variants and every seed), "
            "the seed-mean difference recomputed from per-image intersection and union counts, 95% percentile "
            "interval; the trained models are held fixed, so it answers whether the difference exceeds the "
            "evaluation set's own sampling noise for these models. Two-level interval: each resample also redraws "
            "the row's seeds with replacement, so it spans training noise and evaluation noise together (at a few "
            "seeds the seed draw understates the training noise; the verdict uses the t-interval). "
            f"docs/statistics.md says what each interval answers.{where}")
