"""The pre-registration section: what the study file said before its runs, and what entered it after some ended,
read from the manifest's registrations (study.registration), never from comments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from study.registration import changes
from study.report.blocks import Block

SOURCES = {"sweep": "recorded by the sweep", "git": "rebuilt from the study file's commits"}


def registration_blocks(registrations: Sequence[dict[str, Any]] | None, runs: int) -> list[Block]:
    """Heading, when the study file was first recorded and how many of the study's `runs` had ended then, and each
    change of a variant, seed, margin, split or comparison made after some had ended."""
    blocks = [Block("heading", "Pre-registration")]
    regs = list(registrations or ())
    if not regs:
        return blocks + [Block("text", "Not recorded: this study's manifest holds no registration of its study file "
                                       "(sweeps record one before their first run).")]
    first = regs[0]
    when = "before any of its runs had ended" if first["finished"] == 0 else \
        f"when {first['finished']} of its {runs} runs had already ended"
    text = (f"The study file (sha256 {first['digest'][:12]}) was first recorded on {first['at'][:10]}, {when} "
            f"({SOURCES.get(first.get('source', 'sweep'), first.get('source'))}); {len(regs)} version"
            f"{'s' if len(regs) > 1 else ''} recorded in all.")
    late = changes(regs)
    if not late:
        return blocks + [Block("text", text + " Nothing a verdict reads (variants, seeds, margin, splits, "
                                              "comparisons) changed after a run had ended.")]
    items = [f"{c.at[:10]}, after {c.finished} of the study's {runs} runs had ended: {c.what}" for c in late]
    return blocks + [Block("text", text + " Changed after runs had ended (rows of an added variant say so in the "
                                          "verdict table):"), Block("list", items=items)]
