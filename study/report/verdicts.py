"""The verdicts section of a report: one row per claim with its statistics (study.results.claims), the forest
plot, the rule, and what the intervals answer."""

from __future__ import annotations

import math
from pathlib import Path

from study.report import plots
from study.report.blocks import Block, ci, fmt
from study.results.images import RESAMPLES, ImageBootstrap
from study.results.power import MAX_SEEDS
from study.results.stats import MIN_SEEDS


def claim_blocks(claims: list[dict], fig_dir: Path, images: ImageBootstrap | None = None) -> list[Block]:
    """The verdicts section: the claim table, the forest plot, the rule and what the intervals answer."""
    blocks = [Block("heading", "The paper's claims: verdicts")]
    if not claims:
        return blocks + [Block("text", "No pair of variants in this study isolates one of the paper's claims.")]
    n_max = max(c["n"] for c in claims)
    if n_max < MIN_SEEDS:
        blocks.append(Block("text", f"Too few seeds for a verdict: at least {MIN_SEEDS} shared seeds are needed "
                                    f"(this study has {n_max}). Differences are shown without one."))
    sequential = max(c["planned_looks"] for c in claims) > 1
    untrained = any(k for c in claims for k, *_ in c["untrained"].values())
    headers = ["claim", "better vs worse", "seeds", "Δ mIoU", "noise: sd of Δ (df)", "interval at the verdict's "
               "level", "level", "P(improvement) [95%]", "p (Holm)", "verdict", "paper Δ",
               "detectable Δ (80% power)", "seeds for the paper's Δ", "two-level 95% CI", "image-level 95% CI"]
    headers += ["did not train [95%]"] if untrained else []
    rows = []
    for c in claims:
        seeds = f"{c['n']} (look {c['look']} of {c['planned_looks']})" if sequential else c["n"]
        row = [c["claim"], f"{c['better']} vs {c['worse']}", seeds, fmt(c["diff"]), _noise(c),
               ci(c["ci_low"], c["ci_high"]), _level(c["confidence"]),
               _share(c["prob_improvement"], c["prob_improvement_low"], c["prob_improvement_high"]),
               _p(c["p_adjusted"]), c["verdict"], fmt(c["paper_diff"]),
               _range(c["detectable_low"], c["detectable_high"], c["n"]), _seeds_range(c),
               ci(c["two_level_ci_low"], c["two_level_ci_high"]), ci(c["image_ci_low"], c["image_ci_high"])]
        if untrained:
            row.append("; ".join(f"{v}: {k} of {n} {ci(100 * lo, 100 * hi)}%" for v, (k, n, lo, hi)
                                 in c["untrained"].items() if k))
        rows.append(row)
    blocks.append(Block("table", headers=headers, rows=rows))
    file = plots.forest(claims, fig_dir / "claims_forest.png")
    if file:
        blocks.append(Block("figure", "Claims: Δ with its interval at the verdict's level (black), two-level "
                                      "interval (grey), image-level interval (blue), paper's Δ (red x), 0 dashed",
                            items=[f"figures/{file}"]))
    blocks.append(Block("text", "Rule: " + claims[0]["rule"]))
    if untrained:
        blocks.append(Block("text", "Did not train: runs flagged in their record as never leaving the training "
                                    "plateau. A row is judged on the seeds where both variants trained; the count "
                                    "of runs that did not train (of the variant's completed runs) stands beside it, "
                                    "with its 95% Wilson interval, in percent."))
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


def _sig(v: float) -> str:
    """Two significant digits, never in exponent form (noise estimates from a few seeds are not worth more)."""
    return f"{v:.{max(0, 1 - math.floor(math.log10(abs(v))))}f}" if v else "0"


def _noise(c: dict) -> str:
    return "" if math.isnan(c["sd"]) else f"{_sig(c['sd'])} ({c['df']})"


def _level(confidence: float) -> str:
    return "" if math.isnan(confidence) else f"{100 * confidence:.2f}%"


def _share(v: float, lo: float, hi: float) -> str:
    return "" if math.isnan(v) else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def _range(lo: float, hi: float, n: int) -> str:
    if math.isnan(lo):
        return "not estimable" if n else ""
    return f"{_sig(lo)} to {_sig(hi)}"


def _seeds_range(c: dict) -> str:
    if math.isnan(c["paper_diff"]):
        return ""
    if math.isnan(c["seeds_low"]):
        return "not estimable"
    lo, hi = (f"> {MAX_SEEDS}" if math.isinf(v) else str(int(v)) for v in (c["seeds_low"], c["seeds_high"]))
    return lo if lo == hi else f"{lo} to {hi}"


def _p(v: float) -> str:
    if math.isnan(v):
        return ""
    return "< 0.001" if v < 0.001 else fmt(v, 3)
