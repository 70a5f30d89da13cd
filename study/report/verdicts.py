"""The verdict table: the claim rows (study.results.claims.ClaimRow) printed column by column, in a fixed order.

Each column reads some of a row's fields and is shown when some row has a value for it (a statistic a study
cannot compute is nan, and its column hides): the core columns in the table a reader sees first, the rest folded
under it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from study.report import plots
from study.report.blocks import Block, ci, decimals, own_ci, signed
from study.results.claims import CLAIMS, ClaimRow
from study.results.images import RESAMPLES, ImageBootstrap
from study.results.stats import MIN_SEEDS

FOLDED_COLUMNS = 5  # columns per folded table beside the claim and pair, so each fits a laptop's page
MANY_SEEDS = 10000  # a seeds figure at or beyond this prints as "> 10000"


def row_digits(c: ClaimRow) -> int:
    """Decimals for a row's difference and intervals: by the sd of its paired differences, else its half-width."""
    if math.isfinite(c.sd):
        return decimals(c.sd)
    return decimals((c.ci_high - c.ci_low) / 2) if math.isfinite(c.ci_low) and math.isfinite(c.ci_high) else 2


def level_label(c: ClaimRow) -> str:
    return f"{100 * c.confidence:.4g}%" if math.isfinite(c.confidence) else "95%"


def _p(v: float) -> str:
    return "" if math.isnan(v) else "< 0.001" if v < 0.001 else f"{v:.3f}"


def _seeds(v: float) -> str:
    if math.isnan(v):
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


def _improvement(c: ClaimRow) -> str:
    if math.isnan(c.prob_improvement):
        return ""
    if math.isfinite(c.prob_improvement_low):
        return f"{c.prob_improvement:.2f} [{c.prob_improvement_low:.2f}, {c.prob_improvement_high:.2f}]"
    return f"{c.prob_improvement:.2f}"


def _untrained(c: ClaimRow) -> str:
    parts = []
    for variant, (k, n, lo, hi) in c.untrained.items():
        if k:
            parts.append(f"{variant}: {k} of {n} {ci(100 * lo, 100 * hi, 0)}%")
    return "; ".join(parts)


def _stalls(c: ClaimRow) -> str:
    if math.isnan(c.stall_p):
        return ""
    return f"p {_p(c.stall_p) or '1.000'}" + (f": {c.stalls_more} stalls more" if c.stalls_more else "")


def _seeds_cell(c: ClaimRow, rows: Sequence[ClaimRow]) -> str:
    if max(r.planned_looks for r in rows) > 1:
        return f"{c.n} (look {c.look} of {c.planned_looks})"
    return str(c.n)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[ClaimRow, Sequence[ClaimRow]], str]  # "" where the row has no value
    core: bool = False  # in the table a reader sees first (else folded under it)


COLUMNS = (
    Column("claim", lambda c, _: c.claim, core=True),
    Column("better vs worse", lambda c, _: f"{c.better} vs {c.worse}", core=True),
    Column("seeds", _seeds_cell, core=True),
    Column("Δ mIoU", lambda c, _: signed(c.diff, row_digits(c)), core=True),
    Column("interval", lambda c, _: ci(c.ci_low, c.ci_high, row_digits(c)), core=True),
    Column("verdict", lambda c, _: c.label, core=True),
    Column("size (vs ±m)", lambda c, _: c.size, core=True),
    Column("paper Δ", lambda c, _: signed(c.paper_diff), core=True),
    Column("paper Δ excluded", lambda c, _: "" if c.paper_excluded is None else "yes" if c.paper_excluded else "no",
           core=True),
    Column("registered", lambda c, _: "" if c.added_after is None else f"added after {c.added_after} runs",
           core=True),
    Column("P(improvement)", lambda c, _: _improvement(c)),
    Column("p (Holm)", lambda c, _: _p(c.p_adjusted)),
    Column("noise: sd of Δ (df)", lambda c, _: f"{_sig(c.sd)} ({c.df})" if math.isfinite(c.sd) else ""),
    Column("level", lambda c, _: level_label(c) if math.isfinite(c.confidence) else ""),
    Column("detectable Δ (80% power)", lambda c, _: _range(c.detectable_low, c.detectable_high, _sig)),
    Column("seeds for the paper's Δ", lambda c, _: _range(c.seeds_low, c.seeds_high, _seeds)),
    Column("seeds for Δ = m", lambda c, _: _range(c.margin_seeds_low, c.margin_seeds_high, _seeds)),
    Column("two-level 95% CI", lambda c, _: own_ci(c.two_level_ci_low, c.two_level_ci_high)),
    Column("image-level 95% CI", lambda c, _: own_ci(c.image_ci_low, c.image_ci_high)),
    Column("did not train [95%]", lambda c, _: _untrained(c)),
    Column("stall rates (Fisher, Holm)", lambda c, _: _stalls(c)),
)


def verdict_tables(claims: Sequence[ClaimRow]) -> list[Block]:
    """The core table, and the other columns folded under it (both keyed by claim and pair)."""
    shown = []
    # Holm tests rows at different levels: one level in the header only when every row has it
    levels = {level_label(c) for c in claims}
    for col in COLUMNS:
        cells = [col.cell(c, claims) for c in claims]
        if any(cells):
            header = col.header
            if header == "interval":
                header = "seed 95% CI" if all(math.isnan(c.confidence) for c in claims) else \
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


def size_text(margin: float) -> str:
    """What the size column says, for a study whose smallest difference of interest is `margin`."""
    m = f"{margin:g}"
    return (f"Size: m = {m} mIoU points is the study's smallest difference of interest, set in its study file (the "
            f"pre-registration section says whether before its runs). Each row's interval (the verdict's) is read "
            f"against ±m: better or worse by at least {m} where it clears +{m} or -{m}; by less than {m} where it "
            f"excludes 0 and ±{m} (a decided difference too small to matter); by an unknown amount where it excludes "
            f"0 only; equivalent within ±{m} where it lies inside (-{m}, {m}) (every difference of that size "
            f"excluded, two one-sided tests at the row's level; the verdict then reads so too); not better (or not "
            f"worse) by {m} or more where it excludes only +{m} (or -{m}); inconclusive otherwise. 'paper Δ "
            f"excluded': whether the same interval leaves out the paper's difference for the pair.")


def sensitivity_text(claims: Sequence[ClaimRow], sensitivity: Sequence[ClaimRow]) -> str:
    """Which verdicts move when the runs that did not train are left out (the rows in the same order)."""
    moved = [f"{c.claim}, {c.better} vs {c.worse}: {c.label} -> {s.label} "
             f"(Δ {signed(s.diff, row_digits(s))}, {s.n} seeds)"
             for c, s in zip(claims, sensitivity, strict=True) if c.verdict != s.verdict]
    head = "Sensitivity (every completed run counted, those that did not train too, the same rule): "
    return head + ("; ".join(moved) + "." if moved else "no verdict moves.")


def claim_blocks(claims: Sequence[ClaimRow], fig_dir: Path, images: ImageBootstrap | None = None,
                 sensitivity: Sequence[ClaimRow] | None = None) -> list[Block]:
    """Heading, the verdict table (core, then folded details), the forest plot, the rule, what the intervals answer;
    `sensitivity` (the same rows judged on every completed run) adds the verdicts that would move."""
    blocks = [Block("heading", "The paper's claims: verdicts")]
    if not claims:
        return blocks + [Block("text", "No pair of variants in this study isolates one of the paper's claims.")]
    n_max = max(c.n for c in claims)
    if n_max < MIN_SEEDS:
        blocks.append(Block("text", f"Too few seeds for a verdict: at least {MIN_SEEDS} shared seeds are needed "
                                    f"(this study has {n_max}). Differences are shown without one."))
    blocks += verdict_tables(claims)
    file = plots.forest(list(claims), fig_dir / "claims_forest.png")
    if file:
        blocks.append(Block("figure", "Claims: Δ with its interval at the verdict's level (black), two-level "
                                      "interval (grey), image-level interval (blue), paper's Δ (red x), 0 dashed",
                            items=[f"figures/{file}"]))
    blocks.append(Block("text", "Rule: " + claims[0].rule))
    untested = [c.name for c in CLAIMS if c.name not in {r.claim for r in claims}]
    if untested:
        blocks.append(Block("text", "No pair of variants in this study isolates: " + "; ".join(untested) + "."))
    margin = claims[0].margin
    if margin:
        blocks.append(Block("text", size_text(margin)))
    if any(k for c in claims for k, *_ in c.untrained.values()):
        blocks.append(Block("text", "Did not train: runs flagged in their record as never leaving the training "
                                    "plateau (the training check reads the loss, never the metric). A verdict is "
                                    "about the runs that trained: a seed counts in a row when both its runs "
                                    "trained. The stalls are an outcome of their own: the count of runs that did "
                                    "not train (of the variant's completed runs) stands beside each row with its "
                                    "95% Wilson interval in percent, and the two variants' counts are compared by "
                                    "Fisher's exact test, Holm over the rows (a variant named there stalls more "
                                    "often)."))
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
