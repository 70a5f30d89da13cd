"""The A/A section of a controls report: how often the claims rule decided between twins of one model
(study.results.aa)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from study.record import seeds_text
from study.report import plots
from study.report.blocks import Block, ci, fmt

GOAL = 0.05  # the false-verdict rate the rule is built to stay under (its alpha)


def aa_line(aa: dict[str, Any]) -> str:
    """One sentence: k false verdicts in n A/A comparisons, the rate and its 95% interval."""
    if not aa["n"]:
        return f"A/A ({aa['a']} vs its twin {aa['b']}): no group of {aa['seeds_per_group']} shared seeds yet"
    of = f" of {aa['planned']} planned, the others waiting for runs" if aa.get("waiting") else ""
    return (f"A/A ({aa['a']} vs its twin {aa['b']}, {aa['n']} disjoint groups of {aa['seeds_per_group']} seeds"
            f"{of}): {aa['false']} false verdict{'s' if aa['false'] != 1 else ''} of {aa['n']}, rate "
            f"{100 * aa['rate']:.1f}% (95% interval {100 * aa['rate_low']:.1f}-{100 * aa['rate_high']:.1f}%)")


def _pct(rate: float, digits: int = 1) -> str:
    return f"{100 * rate:.{digits}f}%"


def resampled_blocks(aa: dict[str, Any]) -> list[Block]:
    """The fixed groups' rate beside the resampled level's per n (a table), and one sentence on what it shows."""
    level = [r for r in aa.get("resampled", ()) if r["groups"]]
    if not level:
        return []
    rows = [["fixed (the study's verdicts)", str(aa["seeds_per_group"]), str(aa["n"]), str(aa["false"]),
             _pct(aa["rate"]), f"exact 95% interval {_pct(aa['rate_low'])}-{_pct(aa['rate_high'])}"]] if aa["n"] else []
    rows += [[f"resampled ({r['regroupings']} regroupings)", str(r["n"]), str(r["groups"]), str(r["false"]),
              _pct(r["rate"], 2), f"Monte Carlo se {100 * r['se']:.2f}%"] for r in level]
    return [Block("table", headers=["groups", "seeds a group", "groups judged", "false verdicts", "rate",
                                    "its uncertainty"], rows=rows),
            Block("text", resampled_line(aa, level))]


def resampled_line(aa: dict[str, Any], level: list[dict[str, Any]]) -> str:
    """Each n's resampled rate with its Monte Carlo se, where the rule's alpha lies against rate ± 2 se, and
    whether the fixed groups' interval holds the resampled rate at their own n."""
    where: dict[str, list[str]] = {"below": [], "within": [], "above": []}
    for r in level:
        lo, hi = r["rate"] - 2 * r["se"], r["rate"] + 2 * r["se"]
        where["below" if hi < GOAL else "above" if lo > GOAL else "within"].append(str(r["n"]))
    said = {"below": "under it by more than 2 se (the rule decides less often than its alpha)",
            "within": "within 2 se of it",
            "above": "over it by more than 2 se (the rule over-decides)"}
    rates = ", ".join(f"{_pct(r['rate'], 2)} (se {100 * r['se']:.2f}%) at n = {r['n']}" for r in level)
    parts = [f"at n = {', '.join(ns)} {said[k]}" for k, ns in where.items() if ns]
    text = (f"Resampled level: the same rule on random regroupings of the {len(aa['differences'])} observed paired "
            f"differences, each with a random sign, into disjoint groups of n decides falsely {rates}. Against the rule's {100 * GOAL:g}%: "
            + "; ".join(parts))
    d = [x for x in aa["differences"] if math.isfinite(x)]
    if len(d) > 1:
        text += f". The {len(d)} differences have mean {statistics.fmean(d):+.2f} and sd {statistics.stdev(d):.2f} mIoU points"
    own = next((r for r in level if r["n"] == aa["seeds_per_group"]), None)
    if own is not None and aa["n"]:
        held = aa["rate_low"] <= own["rate"] <= aa["rate_high"]
        text += (f". The fixed groups' interval ({_pct(aa['rate_low'])}-{_pct(aa['rate_high'])}) "
                 f"{'holds' if held else 'does not hold'} the resampled rate at their n = {own['n']}")
    return text + "."


def noise_line(aa: dict[str, Any]) -> str:
    """Where the paired differences' spread comes from: the evaluation sample's upper-bound share, and the sd that
    training alone leaves (what scoring more images could not go below)."""
    noise = aa.get("noise")
    if not noise:
        return ""
    return (f"Where the spread comes from: resampling the evaluation images with each seed's two models held fixed "
            f"moves a seed's difference by a variance of {noise['image']:.2f} points² on average, "
            f"{_pct(noise['share'], 0)} of the {noise['total']:.2f} points² its {noise['n']} differences spread over "
            f"seeds (at most that share is the evaluation sample's: every seed is scored on the same images). "
            f"Training leaves at least {noise['training']:.2f} points² (sd {noise['training_sd']:.2f}): scoring more "
            f"images could not bring the differences' sd below that.")


def figure_blocks(aa: dict[str, Any], fig_dir: Path) -> list[Block]:
    """The paired differences against a normal, and the fixed groups' t statistics against Student's t."""
    df = aa["seeds_per_group"] - 1
    figures = [(f"A/A paired differences {aa['a']} - {aa['b']} (mIoU points) against a normal of their mean and sd "
                "(normal Q-Q plot)", plots.aa_differences(aa.get("differences", ()), fig_dir / "aa_differences.png")),
               (f"The fixed groups' paired t statistics against Student's t with {df} df (Q-Q plot; dashed: the "
                "rule's thresholds, beyond which a group is decided)",
                plots.aa_t_statistics([g.t for g in aa["groups"]], df, fig_dir / "aa_t.png", aa["alpha"]))]
    return [Block("figure", title, items=[f"figures/{file}"]) for title, file in figures if file]


def aa_blocks(aa: dict[str, Any], fig_dir: Path | None = None) -> list[Block]:
    """Heading, the rate against the goal, the resampled level beside it, the figures (with `fig_dir`), one row
    per group, and the rule."""
    blocks = [Block("heading", "A/A: does the claims rule decide between twins?"), Block("text", aa_line(aa) + ".")]
    if aa["n"]:
        hi = aa["rate_high"]
        if hi <= GOAL:
            reading = (f"the interval's upper end is under the rule's alpha: the claims rule is shown to keep its "
                       f"false-verdict rate at most {100 * GOAL:g}%")
        else:
            reading = (f"the interval reaches {100 * hi:.1f}%: these groups cannot yet show the rate is at most "
                       f"{100 * GOAL:g}% (that takes more groups), only that it is at most {100 * hi:.1f}%")
        blocks.append(Block("text", f"Goal: at most {100 * GOAL:g}%; {reading}. Verdicts: "
                                    f"{aa['n'] - aa['false'] - aa['equivalent']} inconclusive, {aa['equivalent']} "
                                    f"equivalent, {aa['false']} false."))
    blocks += resampled_blocks(aa)
    noise = noise_line(aa)
    if noise:
        blocks.append(Block("text", noise))
    if aa["n"] and fig_dir is not None:
        blocks += figure_blocks(aa, fig_dir)
    if aa["n"]:
        rows = [[", ".join(str(s) for s in g.seeds), fmt(g.diff), ci(g.ci_low, g.ci_high),
                 f"{100 * g.confidence:.2f}%", g.label] for g in aa["groups"]]
        blocks.append(Block("table", headers=["seeds", "Δ mIoU (a - b)", "interval", "its level", "claims rule"],
                            rows=rows, fold=f"every group ({len(rows)})" if len(rows) > 12 else ""))
    stalls = {v: kn for v, kn in (aa.get("stalls") or {}).items() if kn[0]}
    if stalls:
        blocks.append(Block("text", "Did not train (left out of their groups, which are judged on the seeds where "
                                    "both runs trained; a group left with fewer than 3 reads too few seeds): "
                            + "; ".join(f"{v}: {k} of {n} runs" for v, (k, n) in stalls.items()) + "."))
    if aa.get("waiting"):
        waiting = aa["waiting"]
        blocks.append(Block("text", f"Waiting for runs: {len(waiting)} planned group{'s' if len(waiting) != 1 else ''}"
                                    f" (seeds {seeds_text([s for g in waiting for s in g])}), each judged once both "
                                    f"variants have all its seeds."))
    if aa["leftover"]:
        blocks.append(Block("text", f"Seeds in no group (fewer than {aa['seeds_per_group']} left): "
                                    f"{', '.join(str(s) for s in aa['leftover'])}."))
    margin = f" and 'equivalent within ±{aa['margin']:g}' for an inconclusive group inside the study's margin" \
        if aa["margin"] else ""
    blocks.append(Block("text", (
        f"Rule: {aa['b']} is {aa['a']} with run.twin set: the same network, its pyramid and heads (and so its dropout "
        "masks) drawn from a stream of its own, the seed's backbone draw, data order and augmentation kept, as two "
        "variants of one seed differ. The study file's seeds, in order, are cut into disjoint groups fixed before any "
        "run; each group is one "
        "comparison 'a beats b' judged by the code that judges the paper's claims (the paired t-test on the seeds "
        f"where both runs trained, its interval{margin}), as a Holm family of one row, the most liberal family the rule "
        f"forms (a study of m rows tests each at alpha/m to alpha = {aa['alpha']:g}). A false verdict is supported or "
        "contradicted; the rate's interval is the exact (Clopper-Pearson) 95% binomial interval.")))
    if any(r["groups"] for r in aa.get("resampled", ())):
        blocks.append(Block("text", (
            "Resampled level: every seed where both variants' runs trained gives one paired difference; each "
            "regrouping shuffles them, gives each a random sign (the twins are exchangeable, so under the A/A's "
            "null a difference and its negative are equally likely; the signs keep the pool's own chance mean and "
            "skew out of every group) and cuts them into disjoint groups of n, each judged by the same rule as a "
            "family of one row (the table's groups judged; a fixed-seed generator: the same runs give the same "
            "numbers). "
            "Its Monte Carlo se is the sd of the regroupings' rates over the square root of their number: "
            "groups of one regrouping are cut from the same differences without replacement, so they are not "
            "independent draws and the binomial se over groups, which assumes they are, does not apply. It is the "
            "simulation's error given these "
            "differences, not their own sampling error (other seeds give other differences). The "
            "fixed groups are the study's verdicts; the resampled level shows how the rule behaves on this noise "
            "at each n.")))
    return blocks
