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
    return f"{signed(row.diff, row_digits(row))} {ci(row.ci_low, row.ci_high, row_digits(row))}", row.label


def _span(rows: Sequence[ClaimRow]) -> str:
    """The seeds and interval levels of a study's rows, as ranges: "10 seeds a row, levels 99.64%-99.67%"."""
    seeds = sorted({r.n for r in rows})
    levels = sorted({level_label(r) for r in rows}, key=lambda s: float(s.rstrip("%")))
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    level = levels[0] if len(levels) == 1 else f"{levels[0]}-{levels[-1]}"
    return f"{n} seeds a row, intervals at {level} (each row's Holm level)"


def _kept_and_moved(original: Sequence[ClaimRow], here: Sequence[ClaimRow]) -> tuple[list[tuple], list[tuple]]:
    """The claim keys judged in both studies, and those of them whose verdict differs."""
    before = {r.key: r.label for r in original}
    both = [r for r in here if r.key in before]
    return [r.key for r in both], [r.key for r in both if before[r.key] != r.label]


def _moved_text(before: dict, after: dict, moved: Sequence[tuple]) -> str:
    return "; ".join(f"{k[0]}, {k[1]} vs {k[2]}: {before[k].label} -> {after[k].label}" for k in moved)


def confirmation_blocks(original: Sequence[ClaimRow] | None, here: Sequence[ClaimRow], name: str) -> list[Block]:
    """Heading, one line on what moved, and the table claim | pair | original | its verdict | here | its verdict."""
    blocks = [Block("heading", f"Replication of {name}")]
    if original is None:
        return blocks + [Block("text", f"The study {name} is not beside this one (its folder next to this study's), "
                                       "so its verdicts cannot be set beside these.")]
    before = {r.key: r for r in original}
    after = {r.key: r for r in here}
    both, moved = _kept_and_moved(original, here)
    lines = _moved_text(before, after, moved)
    only_there = [k for k in before if k not in after]
    only_here = [k for k in after if k not in before]
    blocks.append(Block("text", (
        f"{len(both) - len(moved)} of {len(both)} claim rows in both studies keep their verdict here"
        + (f"; moved: {lines}" if moved else "; none moved")
        + (f"; {len(only_here)} row{'s' if len(only_here) != 1 else ''} only here" if only_here else "")
        + (f"; {len(only_there)} row{'s' if len(only_there) != 1 else ''} of {name} not re-run here (their "
           "variants are not in this study)" if only_there else "") + ".")))
    rows = []
    for k in both + only_here:  # the rows this study judged
        (was, was_verdict), (now, now_verdict) = _cell(before.get(k)), _cell(after.get(k))
        state = "" if k not in both else "moved" if k in moved else "same"
        rows.append([k[0], f"{k[1]} vs {k[2]}", was, was_verdict, now, now_verdict, state])
    blocks.append(Block("table", headers=["claim", "better vs worse", f"{name}: Δ [interval]", "verdict",
                                          "here: Δ [interval]", "verdict", "moved?"], rows=rows))
    blocks.append(Block("text", "Each study is judged alone by the same rule (its own seeds, its own Holm family), "
                                f"so a row's level can differ between the two: {name}, {_span(original)}; here, "
                                f"{_span(here)}."))
    return blocks


def replicated_by_blocks(here: Sequence[ClaimRow], others: Sequence[tuple[str, str, Sequence[ClaimRow]]]
                         ) -> list[Block]:
    """The other direction of `confirmation_blocks`, in the study that was re-run: one item per study that
    confirms it (name, what it is, the rows both judged, which verdicts moved), each judged alone by its rule."""
    if not others:
        return []
    mine = {r.key: r for r in here}
    items = []
    for name, description, theirs in others:
        both, moved = _kept_and_moved(here, theirs)
        items.append(f"{name}: {len(both) - len(moved)} of {len(both)} verdicts kept"
                     + (f"; moved (here -> there): {_moved_text(mine, {r.key: r for r in theirs}, moved)}"
                        if moved else "; none moved")
                     + (f". {description}" if description else "."))
    return [Block("heading", "Replications of this study"),
            Block("text", "Studies that re-run this one (fresh seeds, another backbone, another data set or "
                          "recipe; `confirms:` in their study files), each judged alone by the same rule; their "
                          "reports set every row side by side."),
            Block("list", items=items)]
