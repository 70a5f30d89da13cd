"""A search study's own section, first in its report: the best configuration, the optimisation history, the
importances, where the paper's configuration ranks, then the completed trials and a count of the pruned ones."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from study.report import plots
from study.report.blocks import Block, decimals, fmt
from study.results import axes
from study.results.search import pruned_steps, search_summary

PAPER_CHOICE = "the paper's pyramid (bins 1,2,3,6, average pooling, DR)"


def param(value: Any) -> str:
    """A searched value as a reader wants it: floats to 3 significant digits, the rest as stored."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(value) if x.is_integer() else f"{x:.3g}"


def paper_rank(summary: Mapping[str, Any]) -> str:
    """Where the paper's choice of pyramid ranks among the completed trials ("" when the space has none of it)."""
    paper = summary["paper"]
    if paper["best_is_paper"] is None:
        return ""
    over = ", ".join(paper["keys"])
    if paper["best_is_paper"]:
        return f"The best trial has {PAPER_CHOICE}, over the searched {over}."
    if paper["best_paper_rank"]:
        return (f"The best trial with {PAPER_CHOICE}, over the searched {over}, ranks {paper['best_paper_rank']} of "
                f"{summary['completed']} completed (mIoU {100 * paper['best_paper_value']:.2f}).")
    return f"No completed trial has {PAPER_CHOICE} over the searched {over}."


def lead(summary: Mapping[str, Any]) -> list[str]:
    """The search's result in sentences: the best configuration, where the paper's choice ranks."""
    out = []
    if summary["best"]:
        b = summary["best"][0]
        config = ", ".join(f"{k} {param(b[k])}" for k in summary["params"])
        out.append(f"Best configuration: trial {b['number']} ({config}), mIoU {100 * b['value']:.2f} on one seed.")
    return out + [t for t in (paper_rank(summary),) if t]


def load(study_dir: Path) -> tuple[pd.DataFrame | None, dict[str, Any] | None, dict[str, float]]:
    """(trials.csv table, its summary, importances) of a search folder; None / {} where absent."""
    trials_csv = study_dir / "trials.csv"
    trials = pd.read_csv(trials_csv) if trials_csv.exists() else None
    imp = study_dir / "importances.json"
    return trials, (search_summary(trials) if trials is not None else None), \
        (json.loads(imp.read_text()) if imp.exists() else {})


def _trial_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Completed trials best first: rank, trial, accuracies, the axes that vary between them, training time."""
    done = df[df["status"] == "completed"].sort_values(["miou", "variant"], ascending=[False, True], kind="stable")
    varying = [a.column for a in axes.AXES if a.column in done and done[a.column].astype(str).nunique() > 1]
    headers = ["rank", "trial", "mIoU", "pixel acc", "mean class acc", *varying, "train s"]
    rows = []
    for rank, (_, r) in enumerate(done.iterrows(), start=1):
        rows.append([rank, r["variant"], fmt(100 * r["miou"]), fmt(100 * r["pixel_acc"]), fmt(100 * r["mean_acc"]),
                     *(param(r[a]) for a in varying), fmt(r.get("train_seconds", math.nan), 1)])
    return headers, rows


def search_blocks(*, summary: Mapping[str, Any] | None, trials: pd.DataFrame | None, importances: dict[str, float],
                  df: pd.DataFrame, records: list[Any], direction: str, fig_dir: Path) -> list[Block]:
    """Best configurations, history and importances figures, the paper's rank; then the trials."""
    blocks = [Block("heading", "Search: best configurations")]
    if summary and summary["best"]:
        keys = summary["params"]
        blocks.append(Block("table", headers=["trial", "mIoU", *keys],
                            rows=[[b["number"], fmt(100 * b["value"]), *(param(b[k]) for k in keys)]
                                  for b in summary["best"]]))
        blocks += [Block("text", t) for t in (paper_rank(summary),) if t]
    elif trials is None:
        blocks.append(Block("text", "No trials.csv in this study folder: the search's own record is missing."))
    history = plots.search_history(trials, fig_dir / "search_history.png", direction) if trials is not None else None
    if history:
        blocks.append(Block("figure", "Optimisation history", items=[f"figures/{history}"]))
    imp = plots.importances(importances, fig_dir / "importances.png")
    if imp:
        blocks.append(Block("figure", "Hyperparameter importances", items=[f"figures/{imp}"]))
    headers, rows = _trial_rows(df)
    blocks.append(Block("heading", "Trials"))
    if rows:
        blocks.append(Block("table", headers=headers, rows=rows))
    steps = pruned_steps(records)
    if steps:
        at = ", ".join(f"step {s} ({n})" for s, n in steps.items())
        blocks.append(Block("text", f"{sum(steps.values())} pruned trials are not listed; they stopped at {at}."))
    blocks.append(Block("text", f"mIoU, pixel accuracy and mean class accuracy in percent, one seed per trial "
                                f"(no spread to go by: {decimals(math.nan)} decimals)."))
    return blocks
