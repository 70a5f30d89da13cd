"""The conclusion a report opens with, in plain sentences generated from the results.

What ran (data, recipe, seeds, machine, precision, weights), what the harness concluded per claim (one line each,
with the difference and its interval), which runs did not train, and the caveats that matter. `one_line` gives
the index's summary of a study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from study.record import seeds_text
from study.report.blocks import Block, decimals, signed
from study.report.verdicts import level_label, row_digits
from study.results.claims import ClaimRow
from study.results.stats import Verdict

ORDER = (Verdict.SUPPORTED, Verdict.CONTRADICTED, Verdict.EQUIVALENT, Verdict.INCONCLUSIVE, Verdict.TOO_FEW_SEEDS)
SPREAD_FACTOR = 3.0  # a variant whose seed sd exceeds this many times the median variant's is named


def _short(value: str) -> str:
    try:
        x = float(value)
    except ValueError:
        return value
    return value if x.is_integer() else f"{x:.3g}"


def _values(facts: Mapping[str, Any], key: str, label: str) -> str:
    v = facts.get(key) or []
    if len(v) <= 1:
        return f"{label} {_short(v[0])}" if v else ""
    try:
        numbers = sorted(float(x) for x in v)
    except ValueError:
        return f"{label} varied ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})"
    return f"{label} varied ({len(v)} values, {_short(str(numbers[0]))} to {_short(str(numbers[-1]))})"


def data_text(facts: Mapping[str, Any]) -> str:
    data = ", ".join(facts["data"]) or "data not recorded"
    if facts.get("folder_roots"):  # a folder data set is named by its folder
        data = data.replace("folder", "folder data set " + ", ".join(facts["folder_roots"]), 1)
    if facts.get("train_size") and facts.get("val_size"):
        data += f" ({facts['train_size']} training, {facts['val_size']} evaluation images)"
    return data


def precision_text(facts: Mapping[str, Any], amp: bool | None) -> str:
    p = facts["precision"]
    if p:
        name = {"bfloat16": "bf16 autocast", "float32": "fp32"}.get(p, p)
        return name + (" (the dtype the throughput measurement recorded)"
                       if facts.get("precision_from") == "throughput" else "")
    if amp:
        return "precision not recorded (train.amp on: bf16 autocast where the hardware has bf16, else fp32)"
    return "fp32" if amp is False else "precision not recorded"


def what_ran(facts: Mapping[str, Any], amp: bool | None, kind: str = "grid") -> str:
    recipe = "; ".join(t for t in (_values(facts, "crop", "crop"), _values(facts, "steps", "steps"),
                                   _values(facts, "batch", "batch"), _values(facts, "lr", "lr")) if t)
    counts = [f"{facts['completed']} completed"] + [f"{facts[k]} {k}" for k in ("failed", "pruned") if facts[k]]
    machine = facts["device"] or "device not recorded"
    cpus, unrecorded = facts.get("cpus") or [], facts.get("cpu_unrecorded", 0)
    if cpus:
        machine += ", " + " / ".join(cpus) + (f" (CPU model not recorded by {unrecorded} runs)" if unrecorded else "")
    if facts["hardware"]:
        machine += f", {facts['hardware']}"
    if machine.startswith("cpu") and not cpus:
        machine += ", CPU model not recorded"
    weights = "from pretrained weights (" + ", ".join(facts["weights"]) + ")" if facts["pretrained"] \
        else "trained from scratch"
    if facts.get("feature_caches"):
        weights = "; ".join(facts["weights"]) + " (feature cache " + "; ".join(facts["feature_caches"]) + ")"
    runs = f"{facts['runs']} trials ({', '.join(counts)})" if kind == "search" else \
        f"{facts['runs']} runs ({', '.join(counts)}) of {facts['variants']} variants"
    seeds = seeds_text(facts["seeds"])
    return (f"What ran: {runs}, seed{'s' if len(facts['seeds']) > 1 else ''} {seeds}, on {data_text(facts)}; recipe: {recipe or 'not recorded'}; "
            f"{weights}; on {machine}, {precision_text(facts, amp)}.")


def claim_line(c: ClaimRow) -> str:
    """**verdict** (size): claim, better vs worse: Δ +x mIoU points, interval [lo, hi], n seeds (paper: +y,
    excluded or not); a row of a variant added after runs had finished says so."""
    d = row_digits(c)
    diff = signed(c.diff, d) if math.isfinite(c.diff) else "no difference measured"
    size = f" ({c.size})" if c.size and c.verdict is not Verdict.EQUIVALENT else ""
    line = f"**{c.label}**{size}: {c.claim}, {c.better} vs {c.worse}: Δ {diff} mIoU points"
    if math.isfinite(c.ci_low):
        line += f", {level_label(c)} interval [{c.ci_low:.{d}f}, {c.ci_high:.{d}f}]"
    line += f", {c.n} seeds"
    if math.isfinite(c.paper_diff):
        line += f" (paper: {c.paper_diff:+.2f}" + ({True: ", excluded", False: ", inside the interval"}.get(
            c.paper_excluded, "") + ")")
    if c.added_after is not None:
        line += f"; a variant of this row entered the study file after {c.added_after} runs had ended"
    return line + "."


def upper_bound(rows: Sequence[ClaimRow]) -> float:
    """The largest upper interval end over `rows`, rounded up to 0.1 point: no row's interval reaches it."""
    return math.floor(10 * max(c.ci_high for c in rows)) / 10 + 0.1


def claim_summaries(claims: Sequence[ClaimRow]) -> list[str]:
    """One sentence per claim over its rows, generated from their readings: the verdicts, the size readings, the
    largest gain no row's interval reaches (said only where every row has an interval), and how many rows exclude
    the paper's difference."""
    out = []
    for name in dict.fromkeys(c.claim for c in claims):
        rows = [c for c in claims if c.claim == name]
        text = f"{name} ({len(rows)} row{'s' if len(rows) > 1 else ''}): {verdict_counts(rows)}"
        sizes = sorted({c.size for c in rows if c.size not in ("", "inconclusive") and c.verdict is not Verdict.EQUIVALENT})
        if sizes:
            text += "; read against ±m: " + ", ".join(f"{sum(c.size == s for c in rows)} {s}" for s in sizes)
        if all(math.isfinite(c.ci_high) for c in rows):
            bound = upper_bound(rows)
            if bound > 0:
                text += (f"; no row shows a gain of {bound:.1f} points or more (every interval ends below it)"
                         if len(rows) > 1 else f"; its interval ends below +{bound:.1f}")
        papers = [c for c in rows if c.paper_excluded is not None]
        if papers:
            text += (f"; the paper's difference is excluded by {sum(c.paper_excluded for c in papers)} of "
                     f"{len(papers)} row{'s' if len(papers) > 1 else ''}")
        out.append(text + ".")
    return out


def verdict_counts(claims: Sequence[ClaimRow]) -> str:
    """"12 supported, 3 inconclusive": the rows' verdicts counted, in ORDER."""
    counts: dict[Verdict, int] = {}
    for c in claims:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    labels = {c.verdict: c.label for c in claims}
    return ", ".join(f"{counts[v]} {labels[v]}" for v in sorted(counts, key=ORDER.index))


def untrained_text(facts: Mapping[str, Any], kind: str = "grid") -> str:
    runs = facts["untrained"]
    if runs:
        listed = ", ".join(f"{v} seed {s}" for v, s in runs)
        judged = ("a comparison counts a seed where both of its runs trained, and lists the runs left out"
                  if kind in ("controls", "aa")
                  else "the verdicts count a seed where both runs of a row trained, the stall rates are compared "
                       "as an outcome of their own, and counting every completed run is the sensitivity analysis "
                       "under the verdicts")
        return f"Did not train: {len(runs)} of {facts['completed']} completed runs ({listed}); {judged}."
    if facts["checked"] and facts.get("unjudged"):
        return ("Did not train: none flagged (every run the training check judged passed it; not judged: "
                + ", ".join(facts["unjudged"]) + ").")
    if facts["checked"]:
        return "Did not train: none (every completed run passed the training check)."
    where = "the trials table lists every completed run" if kind == "search" else "the section Every run shows each seed"
    return f"Did not train: none flagged (these records carry no training check; {where})."


def spread_caveats(summary: pd.DataFrame) -> list[str]:
    """Variants whose seed sd is far above the median variant's: a collapsed seed or a two-humped variant."""
    sds = summary.dropna(subset=["miou_std"])
    if len(sds) < 3:
        return []
    median = float(sds["miou_std"].median())
    out = []
    for _, s in sds.iterrows():
        if median > 0 and s["miou_std"] > SPREAD_FACTOR * median:
            d = decimals(s["miou_std"])
            runs = ", ".join(f"{seed}: {v:.1f}" for seed, v in zip(s["miou_seeds"], s["miou_values"], strict=True))
            out.append(f"{s['variant']} spreads over seeds far more than the others (sd {s['miou_std']:.{d}f} "
                       f"points against a median of {median:.{decimals(median)}f}); its runs by seed: {runs}.")
    return out


def caveats(facts: Mapping[str, Any], summary: pd.DataFrame, warnings: Sequence[str], kind: str,
            own: Sequence[str] = ()) -> list[str]:
    """The study file's own caveats first, then what the data, weights, kind, spread and protocol imply."""
    out = list(own)
    if "probe" in facts["data"]:
        out.append("The context probe is a mechanism check on data built so that the mechanism can show, not a "
                   "reproduction of the paper's ADE20K numbers: compare directions, not levels; see the controls "
                   "study for whether the harness can say no on it.")
    if facts.get("feature_caches"):
        out.append("Frozen backbone: every variant and seed trained its pyramid and head on the same stored ImageNet "
                   "features; the paper fine-tunes the whole network, so these verdicts are about the head on fixed "
                   "features.")
    else:
        out.append("Pretrained backbone: " + ", ".join(facts["weights"]) + "." if facts["pretrained"] else
                   "Trained from scratch (the paper fine-tunes ImageNet-pretrained backbones).")
    if kind == "search":
        out.append("One seed per trial, and pruned trials stopped early: a search ranks configurations, it does not "
                   "test a claim.")
    out += spread_caveats(summary)
    if facts.get("absent"):
        n, k, names = facts["absent"], facts["classes"], facts.get("absent_names") or []
        which = ", ".join(names[:5]) + (f" and {n - len(names[:5])} more" if n > len(names[:5]) else "") \
            if names else f"{n} of the {k} classes"
        out.append(f"No evaluation image has a pixel of {which}: {'it counts' if n == 1 else 'they count'} 0 in "
                   f"every run's mIoU (all classes, the official convention), so no run can score above "
                   f"{100 * (k - n) / k:.4g}; miou_present in runs.csv averages the present classes only.")
    out += [f"Compared runs differ in their protocol: {w}." for w in warnings]
    return out


def conclusion_blocks(*, facts: Mapping[str, Any], claims: Sequence[ClaimRow], summary: pd.DataFrame,
                      warnings: Sequence[str], kind: str, amp: bool | None,
                      lead: Sequence[str | Block] = (), own_caveats: Sequence[str] = ()) -> list[Block]:
    """The opening section: what ran, the kind's own result (lead), the verdict per claim, untrained, caveats."""
    blocks = [Block("heading", "Conclusion"), Block("text", what_ran(facts, amp, kind))]
    blocks += [t if isinstance(t, Block) else Block("text", t) for t in lead]
    if claims:
        rows = f"{len(claims)} claim row{'s' if len(claims) > 1 else ''}"
        blocks.append(Block("text", f"The harness's verdicts on {rows} (pairs of variants that differ only in the "
                                    f"claim's choice; one Holm family, this study's): "
                                    f"{verdict_counts(claims)}."))
        blocks.append(Block("list", items=[claim_line(c) for c in claims]))
        blocks += [Block("text", "Per claim, what its rows allow:"), Block("list", items=claim_summaries(claims))]
    elif kind == "grid":
        blocks.append(Block("text", "No pair of variants in this study isolates one of the paper's claims."))
    blocks.append(Block("text", untrained_text(facts, kind)))
    blocks += [Block("text", "Caveats:"), Block("list", items=caveats(facts, summary, warnings, kind, own_caveats))]
    return blocks


def one_line(kind: str, claims: Sequence[ClaimRow], search: Mapping[str, Any] | None) -> str:
    """The index's summary of a study."""
    if kind == "search" and search and search.get("best"):
        best = search["best"][0]
        text = f"best trial {best['number']}: mIoU {100 * best['value']:.2f} (one seed)"
        rank = (search.get("paper") or {}).get("best_paper_rank")
        if (search.get("paper") or {}).get("best_is_paper"):
            text += "; it is the paper's pyramid"
        elif rank:
            text += f"; the paper's pyramid ranks {rank} of {search['completed']} completed"
        return text
    if claims:
        line = f"{verdict_counts(claims)} of {len(claims)} claim row{'s' if len(claims) > 1 else ''}"
        margin = claims[0].margin
        decided = [c for c in claims if c.verdict.decided]
        if margin and decided:
            sizes = dict.fromkeys(c.size for c in decided)
            line += (f"; decided rows against m = {margin:g}: "
                     + ", ".join(f"{sum(c.size == s for c in decided)} {s}" for s in sizes))
        return line
    return "no claim isolated"
