"""The replication section: a study that re-runs another (`confirms:` in its study file; on fresh seeds, another
backbone, another split) sets the two studies' verdicts side by side, row by row, and names the verdicts that moved."""

from __future__ import annotations

from collections.abc import Sequence

from study.report.blocks import Block, ci, signed
from study.report.verdicts import level_label, row_digits
from study.results.claims import ClaimRow


def _cell(row: ClaimRow | None) -> tuple[str, str]:
    if row is None:
        return "not in the study", ""
    return f"{signed(row.diff, row_digits(row))} {ci(row.ci_low, row.ci_high, row_digits(row))}", row.verdict


def _span(rows: Sequence[ClaimRow]) -> str:
    """The seeds and interval levels of a study's rows, as ranges: "10 seeds a row, levels 99.64%-99.67%"."""
    seeds = sorted({r.n for r in rows})
    levels = sorted({level_label(r) for r in rows}, key=lambda s: float(s.rstrip("%")))
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    level = levels[0] if len(levels) == 1 else f"{levels[0]}-{levels[-1]}"
    return f"{n} seeds a row, intervals at {level} (each row's Holm level)"


def confirmation_blocks(original: Sequence[ClaimRow] | None, here: Sequence[ClaimRow], name: str) -> list[Block]:
    """Heading, one line on what moved, and the table claim | pair | original | its verdict | here | its verdict."""
    blocks = [Block("heading", f"Replication of {name}")]
    if original is None:
        return blocks + [Block("text", f"The study {name} is not beside this one (its folder next to this study's), "
                                       "so its verdicts cannot be set beside these.")]
    before = {r.key: r for r in original}
    after = {r.key: r for r in here}
    keys = list(dict.fromkeys([*before, *after]))
    both = [k for k in keys if k in before and k in after]
    moved = [k for k in both if before[k].verdict != after[k].verdict]
    lines = "; ".join(f"{k[0]}, {k[1]} vs {k[2]}: {before[k].verdict} -> {after[k].verdict}" for k in moved)
    only = len(keys) - len(both)
    blocks.append(Block("text", (
        f"{len(both) - len(moved)} of {len(both)} claim rows in both studies keep their verdict here"
        + (f"; moved: {lines}" if moved else "; none moved")
        + (f"; {only} row{'s' if only != 1 else ''} in one study only" if only else "") + ".")))
    rows = []
    for k in keys:
        (was, was_verdict), (now, now_verdict) = _cell(before.get(k)), _cell(after.get(k))
        state = "" if k not in both else "moved" if k in moved else "same"
        rows.append([k[0], f"{k[1]} vs {k[2]}", was, was_verdict, now, now_verdict, state])
    blocks.append(Block("table", headers=["claim", "better vs worse", f"{name}: Δ [interval]", "verdict",
                                          "here: Δ [interval]", "verdict", "moved?"], rows=rows))
    blocks.append(Block("text", "Each study is judged alone by the same rule (its own seeds, its own Holm family), "
                                f"so a row's level can differ between the two: {name}, {_span(original)}; here, "
                                f"{_span(here)}."))
    return blocks
