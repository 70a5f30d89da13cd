"""The paper's claims as data, and their test on a results table.

A claim compares two variants that differ only in the claim's axes (e.g. bins {1} vs {1,2,3,6} with the same
pooling, reduction, backbone, recipe). Each such pair gets the paired mIoU difference over shared seeds, its
bootstrap CI, the paper's difference for the same pair (when the study mirrors a paper table) and a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from study.results.stats import paired_difference, verdict
from study.results.table import AXES

PAPER_DIR = Path(__file__).resolve().parents[2] / "configs" / "paper"


def _blocks(depth: str) -> int:
    return sum(int(v) for v in depth.split(",")) if depth not in ("", "default", "none") else 0


@dataclass(frozen=True)
class Claim:
    name: str
    varying: tuple[str, ...]  # axes allowed to differ between the two variants
    better: Callable[[dict, dict], bool]  # is the first variant the one the paper says is better?
    paper_source: str  # where the paper makes it


CLAIMS = (
    Claim("PPM beats the FCN baseline", ("ppm", "bins", "pool", "reduction"),
          lambda a, b: a["ppm"] and not b["ppm"], "Table 1, Table 4"),
    Claim("B1236 beats B1", ("bins",), lambda a, b: a["bins"] == "1,2,3,6" and b["bins"] == "1", "Table 1"),
    Claim("AVE beats MAX", ("pool",), lambda a, b: a["pool"] == "avg" and b["pool"] == "max", "Table 1"),
    Claim("DR helps", ("reduction",), lambda a, b: a["reduction"] == "DR" and b["reduction"] == "no DR",
          "Table 1"),
    Claim("aux 0.4 beats none", ("aux_weight",), lambda a, b: a["aux_weight"] == 0.4 and b["aux_weight"] == 0,
          "Table 2"),
    Claim("deeper is better", ("depth", "backbone"),
          lambda a, b: (a["backbone"], a["depth"]) != (b["backbone"], b["depth"])
          and _depth_rank(a) > _depth_rank(b), "Table 3"),
    Claim("augmentation helps", ("augment",), lambda a, b: b["augment"] == "none" and a["augment"] != "none",
          "Table 4"),
)


def _depth_rank(axes: dict) -> tuple[int, int]:
    digits = "".join(ch for ch in axes["backbone"] if ch.isdigit())
    return (int(digits) if digits else 0, _blocks(axes["depth"]))


def load_paper_table(name: str | None, paper_dir: Path = PAPER_DIR) -> pd.DataFrame | None:
    """configs/paper/<name>.csv (variant, miou, pixel_acc[, ...], percentages), or None."""
    if not name:
        return None
    path = paper_dir / f"{name}.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, comment="#")


def variant_axes(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    first = df.drop_duplicates("variant", keep="first")
    return {row["variant"]: {a: row[a] for a in AXES if a in row} for _, row in first.iterrows()}


def find_pairs(df: pd.DataFrame, claim: Claim) -> list[tuple[str, str]]:
    """(better, worse) variant pairs that differ only in the claim's axes, in table order."""
    axes = variant_axes(df)
    names = list(axes)
    pairs = []
    for a in names:
        for b in names:
            if a == b:
                continue
            same = all(axes[a][k] == axes[b][k] for k in AXES if k not in claim.varying and k in axes[a])
            if same and claim.better(axes[a], axes[b]):
                pairs.append((a, b))
    return pairs


def judge_claims(df: pd.DataFrame, paper: pd.DataFrame | None = None, metric: str = "miou") -> list[dict[str, Any]]:
    """Every claim the study can test: one row per variant pair (differences in mIoU points)."""
    done = df[df["status"] == "completed"]
    by_variant = {v: dict(zip(g["seed"], g[metric], strict=True)) for v, g in done.groupby("variant", sort=False)}
    paper_miou = dict(zip(paper["variant"], paper["miou"], strict=True)) if paper is not None else {}
    rows = []
    for claim in CLAIMS:
        for better, worse in find_pairs(df, claim):
            diff = paired_difference(by_variant.get(better, {}), by_variant.get(worse, {}))
            paper_diff = (paper_miou[better] - paper_miou[worse]
                          if better in paper_miou and worse in paper_miou else math.nan)
            rows.append({"claim": claim.name, "better": better, "worse": worse, "n": diff["n"],
                         "diff": 100 * diff["mean"], "ci_low": 100 * diff["ci_low"], "ci_high": 100 * diff["ci_high"],
                         "p_value": diff["p_value"], "paper_diff": paper_diff, "verdict": verdict(diff),
                         "paper_source": claim.paper_source})
    return rows
