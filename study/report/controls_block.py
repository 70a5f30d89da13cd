"""The controls section of a report (a study file of kind controls): per control comparison, what the
construction implies, what the harness concluded, and whether the two agree (study.results.controls)."""

from __future__ import annotations

import pandas as pd

from study.report.aa_block import aa_line
from study.report.blocks import Block, ci, fmt
from study.results.controls import null_gains
from study.results.stats import Verdict

EXPECTED = {"better": "a beats b", "worse": "b beats a (a beats b: contradicted)",
            "non-inferior": "a at least as good as b (within {m})",
            "equivalent": "no difference (within ±{m})"}


def controls_lead(rows: list[dict], aa: dict | None = None) -> list[Block]:
    """The conclusion's lead for a controls study: how many comparisons came out as built, then one line per row;
    and the A/A result when the study has a pair (study.results.aa)."""
    first = [Block("text", aa_line(aa) + ".")] if aa is not None else []
    if not rows:
        return first or [Block("text", "No control comparison in this study.")]
    lines = [f"{r.control}, {r.a} vs {r.b} (expected: {_expected(r)}): {r.concluded}, "
             f"Δ {fmt(r.diff)} mIoU points{_interval(r)}, {r.n} seeds; "
             f"as implied: {r.as_implied}; the claims rule: {r.rule_label} "
             f"(as implied: {r.rule_as_implied})" for r in rows]
    return first + [Block("text", f"The controls (data whose answer the construction fixes): {controls_line(rows)}."),
                    Block("list", items=lines)]


def null_caveat(study: str, rows: list, claims: list) -> str:
    """A caveat for a study on the data a controls study's null comparisons ran on: the largest gain a variant showed
    where the construction implies none (study.results.controls.null_gains), and this study's supported rows
    whose interval reaches down to that gain ("" when no null gained)."""
    gains = null_gains(rows)
    if not gains:
        return ""
    top = gains[0]
    nulls = sum(r.expected == "equivalent" for r in rows)
    reach = [f"{c.claim} ({c.better} vs {c.worse}, {fmt(c.diff)} {ci(c.ci_low, c.ci_high)})" for c in claims
             if c.verdict is Verdict.SUPPORTED and c.ci_low <= top.diff]
    reading = (f"Of this study's supported rows, {len(reach)} {'has an interval' if len(reach) == 1 else 'have intervals'} "
               f"reaching down to {fmt(top.diff)} or below, so on their own they do not exclude a gain of that size without context: "
               + "; ".join(reach) + "." if reach else
               f"Every supported row of this study has its interval above {fmt(top.diff)}.")
    return (f"Null controls ({study}, labels that need no context): in {len(gains)} of its {nulls} comparisons "
            f"where the construction implies no difference, a came out above b, by up to {fmt(top.diff)} "
            f"{ci(top.ci_low, top.ci_high)} ({top.a} vs {top.b}, {top.control}): on this data a variant gains that "
            f"much with no context to use. " + reading)


def controls_line(rows: list[dict]) -> str:
    """The index's summary: how many control comparisons came out as their construction implies."""
    counts = {k: sum(r.as_implied == k for r in rows) for k in ("yes", "no", "undecided")}
    rule = {k: sum(r.rule_as_implied == k for r in rows) for k in ("yes", "no", "undecided")}
    return (f"{counts['yes']} of {len(rows)} control comparisons as implied, {counts['no']} against, "
            f"{counts['undecided']} undecided; judged by the claims rule, {rule['yes']} as implied, {rule['no']} "
            f"against, {rule['undecided']} undecided")


def controls_blocks(df: pd.DataFrame, rows: list[dict]) -> list[Block]:
    """Heading, the table "control | comparison | expected | concluded | as implied?", the same comparisons by the
    claims rule, and both rules."""
    blocks = [Block("heading", "Controls: can the harness say no?")]
    if not rows:
        return blocks + [Block("text", "No control comparison in this study (its study file lists them under "
                                       "controls:, see configs/studies/controls.yaml).")]
    table = [[r.control, f"{r.a} vs {r.b}", _expected(r), r.n, fmt(r.diff),
              ci(r.ci_low, r.ci_high), _p(r.p_adjusted), r.concluded, r.as_implied] for r in rows]
    first = rows[0]
    blocks.append(Block("table", headers=["control", "a vs b", "expected", "seeds", "Δ mIoU",
                                          f"{100 * first.level:.1f}% CI", "p (expected, Bonferroni)",
                                          "concluded", "as implied?"], rows=table))
    blocks.append(Block("text", "The same comparisons judged by the claims rule (the code that judges the paper's "
                                "claims, below):"))
    blocks.append(Block("table", headers=["control", "a vs b", "expected", "claims rule", "its interval",
                                          "as implied? (claims rule)"],
                        rows=[[r.control, f"{r.a} vs {r.b}", _expected(r), r.rule_label,
                               ci(r.rule_ci_low, r.rule_ci_high), r.rule_as_implied] for r in rows]))
    blocks.append(Block("list", items=[f"{r.control}, {r.a} vs {r.b}: {r.why}." for r in rows]))
    untrained = sorted({(v, k, n) for r in rows for v, (k, n) in r.untrained.items() if k})
    blocks.append(Block("text", "Did not train (runs the training check flagged as never leaving the plateau; a "
                                "comparison counts a seed where both runs trained): " +
                        ("; ".join(f"{v}: {k} of {n} runs" for v, k, n in untrained) if untrained else "none")
                        + "."))
    if untrained:
        moved = [f"{r.control}, {r.a} vs {r.b}: {r.rule_label} -> {r.rule_label_every_run}"
                 for r in rows if r.rule_verdict != r.rule_verdict_every_run]
        blocks.append(Block("text", "Sensitivity (every completed run counted, those that did not train too, the "
                                    "claims rule): "
                                    + ("; ".join(moved) + "." if moved else "no verdict moves.")))
    blocks.append(Block("text", (
        "Rule: Δ = a - b over the seeds on which both runs completed and trained (mIoU points); M is the comparison's margin (shown with "
        "what it expects). "
        f"Each test is one-sided at 0.05/{first.k} (Bonferroni over the {first.k} comparisons), read off the "
        f"two-sided {100 * first.level:.1f}% t-interval [lo, hi]. Expected 'beats': yes when lo > 0, no when "
        "hi < M (a gain of the margin is excluded). 'b beats a': yes when hi < 0, no when lo > -M. 'At least as "
        "good': non-inferiority, yes when lo > -M, no when "
        "hi < 0. 'No difference': equivalence by TOST, yes when -M < lo and hi < M, no when a difference is shown "
        "(lo > 0 or hi < 0) but not within the margin. Otherwise undecided: a non-significant difference is never "
        "read as no difference. Fewer than 3 shared seeds: no decision.")))
    blocks.append(Block("text", (
        "Claims rule: the same comparisons judged by the code that judges the paper's claims (a paired t-test of "
        "'a beats b', Holm over this study's comparisons, the interval at the level Holm tested the row at, and "
        "'equivalent within ±M' for an undecided row whose interval lies inside the comparison's margin). As "
        "implied when its verdict is the one the construction implies ('beats': supported; 'b beats a': "
        "contradicted; 'at least as good': "
        "supported or equivalent; 'no difference': equivalent); against when it decides otherwise, e.g. "
        "'supported' on data where the pyramid has nothing to add: a false verdict the claims path would publish.")))
    return blocks


def _interval(row: dict) -> str:
    bounds = ci(row.ci_low, row.ci_high)
    return f", {100 * row.level:.1f}% interval {bounds}" if bounds else ""


def _expected(row: dict) -> str:
    return EXPECTED[row.expected].format(m=f"{row.margin:g}")


def _p(v: float) -> str:
    if v != v:  # nan
        return ""
    return "< 0.001" if v < 0.001 else fmt(v, 3)


def _control_cell(row) -> list[str]:
    if row is None:
        return ["not in the study", "", ""]
    return [f"{fmt(row.diff)} {ci(row.ci_low, row.ci_high)}", row.as_implied, row.rule_label]


def _control_moved(before, after) -> bool:
    return (before.as_implied, before.rule_verdict) != (after.as_implied, after.rule_verdict)


def _moved_text(pairs: list) -> str:
    """'a vs b: yes, equivalent within ±M -> no, supported; ...' for (before, after) pairs of one comparison."""
    return "; ".join(f"{b.a} vs {b.b}: {b.as_implied}, {b.rule_label} -> {a.as_implied}, {a.rule_label}"
                     for b, a in pairs)


def controls_confirmation_blocks(original: list | None, here: list, name: str) -> list[Block]:
    """A controls study that re-runs another (`confirms:`): each comparison's reading there and here, side by side
    (Δ and interval, as implied by the control rule, the claims rule's verdict), and the comparisons that moved."""
    blocks = [Block("heading", f"Replication of {name}")]
    if original is None:
        return blocks + [Block("text", f"The study {name} is not beside this one (its folder next to this study's), "
                                       "so its comparisons cannot be set beside these.")]
    before = {(r.a, r.b): r for r in original}
    both = [r for r in here if (r.a, r.b) in before]
    moved = [r for r in both if _control_moved(before[(r.a, r.b)], r)]
    only_here = [r for r in here if (r.a, r.b) not in before]
    blocks.append(Block("text", (
        f"{len(both) - len(moved)} of {len(both)} control comparisons in both studies read the same here (as implied "
        "by the control rule, and the claims rule's verdict)"
        + ("; moved: " + _moved_text([(before[(r.a, r.b)], r) for r in moved]) if moved else "; none moved")
        + (f"; {len(only_here)} only here" if only_here else "") + ".")))
    rows = [[r.control, f"{r.a} vs {r.b}", _expected(r), *_control_cell(before.get((r.a, r.b))), *_control_cell(r),
             "" if (r.a, r.b) not in before else "moved" if r in moved else "same"] for r in here]
    blocks.append(Block("table", headers=["control", "a vs b", "expected", f"{name}: Δ [interval]", "as implied?",
                                          "claims rule", "here: Δ [interval]", "as implied?", "claims rule",
                                          "moved?"], rows=rows))
    blocks.append(Block("text", "Each study is judged alone by the same rules (its own seeds, its own Bonferroni and "
                                "Holm families)."))
    return blocks


def controls_replicated_by_blocks(here: list, others: list[tuple[str, str, list]]) -> list[Block]:
    """The other direction, in the controls study that was re-run: one item per study that confirms it."""
    if not others:
        return []
    mine = {(r.a, r.b): r for r in here}
    items = []
    for name, description, theirs in others:
        both = [r for r in theirs if (r.a, r.b) in mine]
        moved = [r for r in both if _control_moved(mine[(r.a, r.b)], r)]
        items.append(f"{name}: {len(both) - len(moved)} of {len(both)} comparisons read the same"
                     + ("; moved (here -> there): " + _moved_text([(mine[(r.a, r.b)], r) for r in moved])
                        if moved else "; none moved")
                     + (f". {description}" if description else "."))
    return [Block("heading", "Replications of this study"),
            Block("text", "Controls studies that re-run this one (`confirms:` in their study files), each judged alone "
                          "by the same rules; their reports set every comparison side by side."),
            Block("list", items=items)]
