"""The A/A section of a controls report: how often the claims rule decided between twins of one model
(study.results.aa)."""

from __future__ import annotations

from typing import Any

from study.record import seeds_text
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


def aa_blocks(aa: dict[str, Any]) -> list[Block]:
    """Heading, the rate against the goal, one row per group, and the rule."""
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
        rows = [[", ".join(str(s) for s in g["seeds"]), fmt(g["diff"]), ci(g["ci_low"], g["ci_high"]),
                 f"{100 * g['confidence']:.2f}%", g["verdict"]] for g in aa["groups"]]
        blocks.append(Block("table", headers=["seeds", "Δ mIoU (a - b)", "interval", "its level", "claims rule"],
                            rows=rows, fold=f"every group ({len(rows)})" if len(rows) > 12 else ""))
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
        "comparison 'a beats b' judged by the code that judges the paper's claims (the paired t-test on every "
        f"completed run, its interval{margin}), as a Holm family of one row, the most liberal family the rule "
        f"forms (a study of m rows tests each at alpha/m to alpha = {aa['alpha']:g}). A false verdict is supported or "
        "contradicted; the rate's interval is the exact (Clopper-Pearson) 95% binomial interval.")))
    return blocks
