"""Do a study's verdicts replicate? Judge the claims on disjoint groups of seeds and compare, row by row.

Two groups of seeds are two independent replications of the same study (each seed draws its own initialisation
and data order), which is what a re-run on another machine amounts to once floating-point differences have sent
training down another path. A row *moves* when its verdicts differ between groups, and *reverses* when one group
supports a claim the other contradicts.

    python -m study.results.replicate results/table1 --groups 0-4 5-9
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from study.record import seeds_text
from study.results.claims import judge_claims, load_paper_table
from study.results.table import ResultsError, load_manifest, read_table

OPPOSITE = {("supported", "contradicted"), ("contradicted", "supported")}


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,2,5' (or a mix, '0-2,7') -> sorted seeds."""
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--groups: {text!r} is not seeds such as 0-4 or 0,2,5") from None
    return sorted(seeds)


def replicate(df: pd.DataFrame, groups: Sequence[Sequence[int]], paper: pd.DataFrame | None = None,
              margin: float | None = None) -> list[dict[str, Any]]:
    """One row per claim row: its verdict and Δ in each seed group, whether it moves and whether it reverses."""
    if len(groups) < 2:
        raise ValueError("--groups: at least two groups of seeds are needed to compare")
    flat = [s for g in groups for s in g]
    if len(flat) != len(set(flat)):
        raise ValueError("--groups: the groups share seeds; replications must be disjoint")
    judged = [judge_claims(df[df["seed"].isin(list(g))], paper, margin=margin) for g in groups]
    keys = [r.key for r in judged[0]]
    by_group = [{r.key: r for r in rows} for rows in judged]
    out = []
    for key in keys:
        rows = [g.get(key) for g in by_group]
        verdicts = [r.label if r else "absent" for r in rows]
        out.append({"claim": key[0], "better": key[1], "worse": key[2], "verdicts": verdicts,
                    "diffs": [r.diff if r else float("nan") for r in rows],
                    "ns": [r.n if r else 0 for r in rows],
                    "moves": len(set(verdicts)) > 1,
                    "reverses": any((a, b) in OPPOSITE for a in verdicts for b in verdicts)})
    return out


def markdown(rows: Sequence[dict[str, Any]], groups: Sequence[Sequence[int]]) -> str:
    """The comparison as a markdown table and a one-line summary."""
    names = [seeds_text(g) for g in groups]
    headers = ["claim", "pair", *(f"seeds {n}" for n in names), "moves?"]
    table = [[r["claim"], f"{r['better']} vs {r['worse']}",
              *(f"{v} ({d:+.1f}, n={n})" for v, d, n in zip(r["verdicts"], r["diffs"], r["ns"], strict=True)),
              "reverses" if r["reverses"] else "moves" if r["moves"] else ""] for r in rows]
    moved = sum(r["moves"] for r in rows)
    reversed_ = sum(r["reverses"] for r in rows)
    return (tabulate(table, headers=headers, tablefmt="github")
            + f"\n\n{len(rows)} claim rows: {moved} move, {reversed_} reverse.\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.results.replicate", description=__doc__.splitlines()[0])
    p.add_argument("study_dir", help="results/<study> (or a shipped reports/_inputs/<study>)")
    p.add_argument("--groups", nargs="+", required=True, help="disjoint seed groups, e.g. 0-4 5-9")
    args = p.parse_args(argv)
    try:
        groups = [parse_seeds(g) for g in args.groups]
        study = Path(args.study_dir)
        df = read_table(study)
        manifest = load_manifest(study)
        rows = replicate(df, groups, load_paper_table(manifest.paper_table), manifest.equivalence_margin)
    except (ValueError, ResultsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(rows, groups), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
