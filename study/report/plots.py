"""Report figures (matplotlib Agg, fixed size, dpi and metadata so that re-rendering gives identical bytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from study.atomic import atomic_write_bytes  # noqa: E402

DPI = 100
plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "svg.hashsalt": "pspnet-study"})


def _save(fig: plt.Figure, path: Path) -> str:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path.name


def bars(summary: pd.DataFrame, path: Path, metric_label: str = "mIoU (%), all classes, absent count 0") -> str:
    """Mean mIoU per variant with its 95% CI over seeds; seeds as dots."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(summary) + 1.5), 3.2))
    xs = np.arange(len(summary))
    means = summary["miou_mean"].to_numpy()
    lo = means - summary["miou_ci_low"].fillna(summary["miou_mean"]).to_numpy()
    hi = summary["miou_ci_high"].fillna(summary["miou_mean"]).to_numpy() - means
    ax.bar(xs, means, color="#5b8db8", yerr=[lo, hi], capsize=3)
    for i, seeds in enumerate(summary["miou_values"]):
        ax.scatter([i] * len(seeds), seeds, color="black", s=8, zorder=3)
    ax.set_xticks(xs, summary["variant"], rotation=30, ha="right")
    ax.set_ylabel(metric_label)
    finite = np.concatenate([np.asarray(v, dtype=float) for v in summary["miou_values"] if len(v)] or [np.zeros(1)])
    ax.set_ylim(max(0.0, float(np.nanmin(finite)) - 8), min(100.0, float(np.nanmax(finite)) + 5))
    ax.set_title("mIoU per variant (mean, 95% CI over seeds, dots: seeds)")
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
    axes[0].legend(fontsize=7)
    fig.suptitle("Training curves (mean over seeds)")
    return _save(fig, path)


def heatmap(per_class: pd.DataFrame, path: Path) -> str | None:
    """Per-class IoU (%), variants x classes, mean over seeds."""
    if per_class.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * per_class.shape[1] + 2), max(2.5, 0.4 * len(per_class) + 1)))
    sns.heatmap(per_class, annot=per_class.shape[1] <= 20, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "IoU (%)"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title("Per-class IoU (mean over seeds)")
    return _save(fig, path)


def search_history(trials: pd.DataFrame, path: Path, direction: str) -> str | None:
    """Objective per completed trial and the best so far."""
    done = trials[trials["state"].astype(str).str.contains("COMPLETE")].sort_values("number")
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    values = 100 * done["value"].to_numpy(dtype=float)
    best = np.maximum.accumulate(values) if direction == "maximize" else np.minimum.accumulate(values)
    ax.scatter(done["number"], values, s=12, label="trial")
    ax.plot(done["number"], best, color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (%)")
    ax.legend(fontsize=7)
    ax.set_title("Optimisation history")
    return _save(fig, path)


def importances(values: dict[str, float], path: Path) -> str | None:
    if not values:
        return None
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(5.0, 0.4 * len(items) + 1))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#5b8db8")
    ax.set_xlabel("importance (fANOVA, Optuna)")
    ax.set_title("Hyperparameter importances")
    return _save(fig, path)


def forest(claims: list[dict[str, Any]], path: Path, unit: str = "mIoU points") -> str | None:
    """Each claim row's Δ with its interval at the verdict's level (black), two-level (grey) and image-level (blue)
    intervals, the paper's Δ (red x)."""
    if not claims:
        return None
    n = len(claims)
    fig, ax = plt.subplots(figsize=(7.0, 0.38 * n + 1.4))
    ys = np.arange(n)[::-1]
    for y, c in zip(ys, claims, strict=True):
        if np.isfinite(c["image_ci_low"]):
            ax.plot([c["image_ci_low"], c["image_ci_high"]], [y - 0.18] * 2, color="#5b8db8", linewidth=4,
                    solid_capstyle="butt", label="image-level 95%" if y == ys[0] else None)
        if np.isfinite(c.get("two_level_ci_low", np.nan)):
            ax.plot([c["two_level_ci_low"], c["two_level_ci_high"]], [y + 0.18] * 2, color="#999999", linewidth=4,
                    solid_capstyle="butt", label="two-level 95%" if y == ys[0] else None)
        if np.isfinite(c["ci_low"]):
            ax.plot([c["ci_low"], c["ci_high"]], [y, y], color="black", linewidth=1.2,
                    label="seeds, at the verdict's level" if y == ys[0] else None)
        ax.scatter([c["diff"]], [y], color="black", s=18, zorder=3)
        if np.isfinite(c["paper_diff"]):
            ax.scatter([c["paper_diff"]], [y], color="#c0392b", marker="x", s=30, zorder=4,
                       label="paper Δ" if y == ys[0] else None)
    ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(ys, [f"{c['claim']}: {c['better']} vs {c['worse']} ({c['verdict']})" for c in claims],
                  fontsize=7)
    ax.set_xlabel(f"Δ (better - worse), {unit}")
    ax.set_title("Claims: paired difference over seeds")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
