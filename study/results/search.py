"""A search study's trials (trials.csv, written by the runner) summarised: counts by state, the best trials and
whether the best configuration is the paper's own choice of pyramid (B1236, average pooling, DR)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

PAPER_CHOICE = {"model.bins": "[1, 2, 3, 6]", "model.pool": "avg", "model.reduction": "true"}


def _label(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).lower() if isinstance(value, (bool, str)) else str(value)


def search_summary(trials: pd.DataFrame, top: int = 5) -> dict[str, Any]:
    """{counts: {state: n}, params: [...], best: [rows], paper: {...}} from a trials.csv table."""
    params = [c for c in trials.columns if c.startswith("params_")]
    states = trials["state"].astype(str).str.replace("TrialState.", "", regex=False)
    counts = {s: int(n) for s, n in states.value_counts().sort_index().items()}
    done = trials[states == "COMPLETE"].sort_values(["value", "number"], ascending=[False, True], kind="stable")
    best = [{"number": int(r["number"]), "value": float(r["value"]),
             **{c.removeprefix("params_"): _label(r[c]) for c in params}} for _, r in done.head(top).iterrows()]
    searched = [k for k in PAPER_CHOICE if f"params_{k}" in trials.columns]
    paper: dict[str, Any] = {"keys": searched, "best_is_paper": None, "best_paper_value": math.nan,
                             "best_paper_rank": None}
    if searched and len(done):
        is_paper = pd.Series(True, index=done.index)
        for key in searched:
            is_paper &= done[f"params_{key}"].map(_label) == PAPER_CHOICE[key]
        paper["best_is_paper"] = bool(is_paper.iloc[0])
        if is_paper.any():
            paper["best_paper_value"] = float(done[is_paper]["value"].iloc[0])
            paper["best_paper_rank"] = int(list(is_paper).index(True)) + 1
    return {"counts": counts, "params": [c.removeprefix("params_") for c in params], "best": best, "paper": paper,
            "completed": len(done)}


def pruned_steps(records: list[Any]) -> dict[int, int]:
    """{step: number of pruned runs that stopped there}: a pruned run's last logged step (0 when it logged none)."""
    out: dict[int, int] = {}
    for r in records:
        if r.status == "pruned":
            step = max((int(c["step"]) for c in r.curves if "step" in c), default=0)
            out[step] = out.get(step, 0) + 1
    return dict(sorted(out.items()))
