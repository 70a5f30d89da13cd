"""Report figures (matplotlib Agg, fixed size, dpi and metadata so that re-rendering gives identical bytes)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

from study.atomic import atomic_write_bytes  # noqa: E402
from study.results.claims import ClaimRow  # noqa: E402

DPI = 100
LEGEND_MAX = 10  # more lines than this get no legend
MAX_WIDTH = 11.0  # inches: a figure at DPI stays within a laptop page (1100 px)
# one bundled font, no PNG metadata (see _save): the same figure gives the same bytes on every machine
plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "svg.hashsalt": "pspnet-study",
                     "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]})


def _save(fig: plt.Figure, path: Path) -> str:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path.name


def strip(summary: pd.DataFrame, path: Path, untrained: Collection[tuple[str, int]] = ()) -> str | None:
    """Every completed run's mIoU (dots, spread sideways in seed order) beside its variant's mean (bar) and 95% CI
    over seeds (line); the (variant, seed) runs in `untrained` as red crosses."""
    data = summary[summary["n"] > 0].reset_index(drop=True)
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(4.5, 0.9 * len(data) + 1.5)), 3.4))
    untrained = set(untrained)
    for i, s in data.iterrows():
        n = len(s["miou_values"])
        width = min(0.09, 0.6 / max(n, 1))
        xs = i + 0.18 + width * (np.arange(n) - (n - 1) / 2)
        bad = np.array([(s["variant"], seed) in untrained for seed in s["miou_seeds"]], dtype=bool)
        values = np.asarray(s["miou_values"], dtype=float)
        ax.scatter(xs[~bad], values[~bad], s=14, color="#3a6f9a", zorder=3, label="a run (seed)" if i == 0 else None)
        if bad.any():
            ax.scatter(xs[bad], values[bad], s=30, marker="x", color="#c0392b", zorder=4, label="did not train")
        if np.isfinite(s["miou_ci_low"]):
            ax.plot([i - 0.18] * 2, [s["miou_ci_low"], s["miou_ci_high"]], color="black", linewidth=1.2,
                    label="95% CI of the mean" if i == 0 else None)
        ax.plot([i - 0.3, i - 0.06], [s["miou_mean"]] * 2, color="black", linewidth=2.2,
                label="mean over seeds" if i == 0 else None)
    ax.set_xticks(np.arange(len(data)), data["variant"], rotation=30 if len(data) > 4 else 0,
                  ha="right" if len(data) > 4 else "center")
    ax.set_xlim(-0.6, len(data) - 0.4)
    ax.set_ylabel("mIoU (%), all classes, absent count 0")
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    ax.set_title("Every run: mIoU per seed (dots), mean and 95% CI per variant")
    return _save(fig, path)


def pareto(summary: pd.DataFrame, path: Path) -> str | None:
    """mIoU against inference throughput; the Pareto front (no variant both faster and better) joined."""
    data = summary.dropna(subset=["infer_img_s", "miou_mean"])
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    ax.scatter(data["infer_img_s"], data["miou_mean"], color="#d0743c", zorder=3)
    for _, row in data.iterrows():
        ax.annotate(row["variant"], (row["infer_img_s"], row["miou_mean"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    front = pareto_front(data["infer_img_s"].to_numpy(), data["miou_mean"].to_numpy())
    pts = data.iloc[front].sort_values("infer_img_s")
    ax.plot(pts["infer_img_s"], pts["miou_mean"], color="#d0743c", linestyle="--", linewidth=1)
    ax.set_xlabel("inference images/s (bench protocol; per variant)")
    ax.set_ylabel("mIoU (%), all classes, absent count 0")
    ax.set_title("Accuracy vs throughput (dashed: Pareto front)")
    return _save(fig, path)


def pareto_front(speed: np.ndarray, score: np.ndarray) -> list[int]:
    """Indices of points that no other point beats on both speed and score."""
    out = []
    for i in range(len(speed)):
        dominated = any((speed[j] >= speed[i] and score[j] >= score[i]) and (speed[j] > speed[i] or score[j] > score[i])
                        for j in range(len(speed)))
        if not dominated:
            out.append(i)
    return out


def curves(records: list[Any], order: list[str], path: Path) -> str | None:
    """Training loss and val mIoU against step, one line per variant (mean over seeds)."""
    rows = []
    for r in records:
        for c in r.curves:
            rows.append({"variant": r.variant, "seed": r.seed, "step": c["step"], "loss": c.get("loss"),
                         "val_miou": c.get("val_miou")})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.2))
    palette = dict(zip(order, sns.color_palette("tab10", len(order)), strict=False))
    for variant in order:
        part = df[df["variant"] == variant]
        loss = part.dropna(subset=["loss"]).groupby("step")["loss"].mean()
        miou = part.dropna(subset=["val_miou"]).groupby("step")["val_miou"].mean()
        if len(loss):
            axes[0].plot(loss.index, loss.values, label=variant, color=palette.get(variant))
        if len(miou):
            axes[1].plot(miou.index, 100 * miou.values, marker="o", label=variant, color=palette.get(variant))
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss (window mean)")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("val mIoU (%)")
    if len(order) <= LEGEND_MAX:
        axes[0].legend(fontsize=7)
        fig.suptitle("Training curves (mean over seeds)")
    else:  # a legend of dozens of trials would cover the plot
        fig.suptitle(f"Training curves (mean over seeds), {len(order)} variants, one line each")
    return _save(fig, path)


def heatmap(per_class: pd.DataFrame, path: Path) -> str | None:
    """Per-class IoU (%), variants x classes, mean over seeds."""
    if per_class.empty:
        return None
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(5.0, 0.55 * per_class.shape[1] + 2)),
                                    max(2.5, 0.4 * len(per_class) + 1)))
    sns.heatmap(per_class, annot=per_class.shape[1] <= 20, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "IoU (%)"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title("Per-class IoU (mean over seeds)")
    return _save(fig, path)


def search_history(trials: pd.DataFrame, path: Path, direction: str) -> str | None:
    """Objective per completed trial and the best so far; pruned trials at their last reported value."""
    done = trials[trials["state"].astype(str).str.contains("COMPLETE")].sort_values("number")
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    values = 100 * done["value"].to_numpy(dtype=float)
    best = np.maximum.accumulate(values) if direction == "maximize" else np.minimum.accumulate(values)
    pruned = trials[trials["state"].astype(str).str.contains("PRUNED")].dropna(subset=["value"])
    if len(pruned):
        ax.scatter(pruned["number"], 100 * pruned["value"].to_numpy(dtype=float), s=14, marker="x",
                   color="#aaaaaa", label="pruned (value when stopped)")
    ax.scatter(done["number"], values, s=14, label="completed trial")
    ax.plot(done["number"], best, color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (%)")
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.legend(fontsize=7)
    ax.set_title("Optimisation history")
    return _save(fig, path)


def importances(values: dict[str, float], path: Path) -> str | None:
    if not values:
        return None
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(6.0, 0.4 * len(items) + 1))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#5b8db8")
    ax.set_xlabel("importance (fANOVA, Optuna)")
    ax.set_title("Hyperparameter importances")
    return _save(fig, path)


def forest(claims: list[ClaimRow], path: Path, unit: str = "mIoU points") -> str | None:
    """Each claim row's Δ with its interval at the verdict's level (black), two-level (grey) and image-level (blue)
    intervals, the paper's Δ (red x)."""
    if not claims:
        return None
    n = len(claims)
    fig, ax = plt.subplots(figsize=(7.0, 0.38 * n + 1.4))
    ys = np.arange(n)[::-1]
    for y, c in zip(ys, claims, strict=True):
        if np.isfinite(c.image_ci_low):
            ax.plot([c.image_ci_low, c.image_ci_high], [y - 0.18] * 2, color="#5b8db8", linewidth=4,
                    solid_capstyle="butt", label="image-level 95%" if y == ys[0] else None)
        if np.isfinite(c.two_level_ci_low):
            ax.plot([c.two_level_ci_low, c.two_level_ci_high], [y + 0.18] * 2, color="#999999", linewidth=4,
                    solid_capstyle="butt", label="two-level 95%" if y == ys[0] else None)
        if np.isfinite(c.ci_low):
            ax.plot([c.ci_low, c.ci_high], [y, y], color="black", linewidth=1.2,
                    label="seeds, at the verdict's level" if y == ys[0] else None)
        ax.scatter([c.diff], [y], color="black", s=18, zorder=3)
        if np.isfinite(c.paper_diff):
            ax.scatter([c.paper_diff], [y], color="#c0392b", marker="x", s=30, zorder=4,
                       label="paper Δ" if y == ys[0] else None)
    ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(ys, [f"{c.claim}: {c.better} vs {c.worse} ({c.label})" for c in claims],
                  fontsize=7)
    ax.set_xlabel(f"Δ (better - worse), {unit}")
    ax.set_title("Claims: paired difference over seeds")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _qq_axes(ax: plt.Axes, theory: np.ndarray, observed: np.ndarray, line: tuple[float, float]) -> None:
    """Sorted values against their theoretical quantiles, with the line intercept + slope * quantile."""
    ax.scatter(theory, observed, s=10, color="#3a6f9a", zorder=3)
    ends = np.array([theory.min(), theory.max()])
    ax.plot(ends, line[0] + line[1] * ends, color="black", linewidth=1)
    ax.grid(color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def plotting_positions(n: int) -> np.ndarray:
    """(i - 0.5) / n, i = 1..n: the probabilities whose quantiles a Q-Q plot puts n sorted values against."""
    return (np.arange(1, n + 1) - 0.5) / n


def aa_differences(diffs: Any, path: Path) -> str | None:
    """Normal Q-Q plot of the A/A paired differences (a - b, mIoU points) against the normal of their mean and sd."""
    d = np.sort(np.asarray([x for x in diffs if np.isfinite(x)], dtype=float))
    if len(d) < 3:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    _qq_axes(ax, stats.norm.ppf(plotting_positions(len(d))), d, (float(d.mean()), float(d.std(ddof=1))))
    ax.set_xlabel("standard normal quantile")
    ax.set_ylabel("paired difference a - b (mIoU points)")
    ax.set_title(f"A/A differences ({len(d)} seeds) against a normal (line)", fontsize=9)
    return _save(fig, path)


def aa_t_statistics(t: Any, df: int, path: Path, alpha: float) -> str | None:
    """Q-Q plot of the fixed A/A groups' paired t statistics against Student's t with df degrees of freedom
    (line: equality), dashed at the rule's two-sided thresholds ±t(1 - alpha/2): points beyond them were decided."""
    x = np.sort(np.asarray([v for v in t if np.isfinite(v)], dtype=float))
    if len(x) < 3:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    _qq_axes(ax, stats.t.ppf(plotting_positions(len(x)), df), x, (0.0, 1.0))
    crit = float(stats.t.isf(alpha / 2, df))
    for y in (-crit, crit):
        ax.axhline(y, color="#c0392b", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"Student's t quantile ({df} df)")
    ax.set_ylabel("group's paired t statistic")
    ax.set_title(f"A/A groups' t ({len(x)} groups) against t({df}); dashed: the rule's ±{crit:.2f}", fontsize=9)
    return _save(fig, path)
