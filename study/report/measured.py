"""The measured sections of a grid's report: every run per seed (strip plot), the accuracy and cost tables, the
variants' axes, and the paper's table beside the measured one. Means and intervals at the precision their seed
spread supports (study.report.blocks.decimals)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from study.atomic import atomic_write_text
from study.record import seeds_text
from study.report import plots
from study.report.blocks import Block, ci, decimals, fmt, pm, signed
from study.results import axes
from study.results.summary import memory_label


def semantics() -> str:
    return " ".join(["Model semantics: in this harness every pyramid branch is pool -> 1x1 conv -> BN -> ReLU.",
                     *(a.note for a in axes.AXES if a.note)])


def axes_shown() -> tuple[str, ...]:
    """The axis columns every variants table shows (the others only when they vary)."""
    return tuple(a.column for a in axes.AXES if a.shown)

def short(v: Any) -> str:
    """An axis value: floats to 3 significant digits, the rest as printed by fmt."""
    return f"{v:.3g}" if isinstance(v, float) and math.isfinite(v) else fmt(v)


SEEDS_PER_TABLE = 10  # per-seed columns in one table, so it fits a laptop's page
SEEDS_INLINE = 30  # more seeds than this: the per-seed values go to one file beside the report, not into tables
EVERY_RUN_FILE = "every_run.csv"


def every_run_blocks(summary: pd.DataFrame, untrained: list[tuple[str, int]], fig_dir: Path,
                     table_dir: Path | None = None) -> list[Block]:
    """The strip plot of every run beside its variant's mean and interval, and the per-seed values: folded tables
    of SEEDS_PER_TABLE seeds up to SEEDS_INLINE seeds, above that one CSV file in `table_dir` (the report folder,
    default the figures folder's parent) linked from the report."""
    file = plots.strip(summary, fig_dir / "every_run.png", untrained)
    if not file:
        return []
    seeds = sorted({int(s) for v in summary["miou_seeds"] for s in v})
    blocks = [Block("heading", "Every run"),
              Block("figure", "mIoU of every run (dots, by seed) beside its variant's mean and 95% CI",
                    items=[f"figures/{file}"])]
    done = summary[summary["n"] > 0]
    if len(seeds) > SEEDS_INLINE:
        path = (fig_dir.parent if table_dir is None else table_dir) / EVERY_RUN_FILE
        atomic_write_text(path, every_run_csv(done, seeds, untrained))
        return blocks + [Block("text", f"mIoU per seed: [{path.name}]({path.name}), one row per seed ({len(seeds)}), "
                                       f"one column per variant ({len(done)}), each at its variant's precision as in "
                                       "the tables; the last column names the variants whose run at that seed did "
                                       "not train.")]
    for start in range(0, len(seeds), SEEDS_PER_TABLE):  # many seeds: one folded table per block of seeds
        part = seeds[start:start + SEEDS_PER_TABLE]
        rows = []
        for _, s in done.iterrows():
            values = _per_seed(s)
            rows.append([s["variant"], *("" if seed not in values else values[seed] + (
                " (did not train)" if (s["variant"], seed) in untrained else "") for seed in part)])
        which = "" if len(seeds) <= SEEDS_PER_TABLE else f", seeds {seeds_text(part)}"
        blocks.append(Block("table", headers=["variant", *(f"seed {s}" for s in part)], rows=rows,
                            fold=f"mIoU per seed (table{which})"))
    return blocks


def _per_seed(s: pd.Series) -> dict[int, str]:
    """seed -> a variant's mIoU of that seed, at the precision its sd over seeds supports."""
    d = decimals(s["miou_std"])
    return {int(seed): f"{v:.{d}f}" for seed, v in zip(s["miou_seeds"], s["miou_values"], strict=True)}


def every_run_csv(summary: pd.DataFrame, seeds: list[int], untrained: list[tuple[str, int]]) -> str:
    """The per-seed table as CSV text: seed, one mIoU column per variant (empty: no completed run), and the
    variants whose run did not train ("; "-separated). Plain text, no timestamps: the same runs give the same
    bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["seed", *summary["variant"], "did not train"])
    values = [_per_seed(s) for _, s in summary.iterrows()]
    bad = set(untrained)
    for seed in seeds:
        writer.writerow([seed, *(v.get(seed, "") for v in values),
                         "; ".join(v for v in summary["variant"] if (v, seed) in bad)])
    return buffer.getvalue()


def measured_blocks(df: pd.DataFrame, summary: pd.DataFrame, baseline: str | None, records: list,
                    bench: dict[str, dict] | None = None) -> list[Block]:
    """The measured tables; the throughput protocol is the per-variant benchmark's (`bench`, from
    bench/<variant>.json) where the study has one, else the first run's that timed itself."""
    done = df[df["status"] == "completed"]
    mem = memory_label(list(done["memory_kind"].astype(str))) if "memory_kind" in done else memory_label([])
    base = summary[summary["variant"] == baseline].iloc[0] if baseline in set(summary["variant"]) else None
    acc, cost = [], []
    head = "head_train_img_s" in summary and bool(summary["head_train_img_s"].notna().any())
    for _, s in summary.iterrows():
        d, da = decimals(s["miou_std"]), decimals(s["acc_std"])
        acc.append([s["variant"], f"{s['n']}/{s['runs']}", pm(s["miou_mean"], s["miou_std"]),
                    ci(s["miou_ci_low"], s["miou_ci_high"], d), _delta(s, base), pm(s["acc_mean"], s["acc_std"]),
                    ci(s["acc_ci_low"], s["acc_ci_high"], da), pm(s["macc_mean"], s["macc_std"])])
        cost.append([s["variant"], fmt(s["train_img_s"], 1), fmt(s["infer_img_s"], 1), fmt(s["latency_ms_p50"], 1),
                     fmt(s["peak_mem_mb"], 0), fmt(s["params_m"], 3), fmt(s["gflops"], 3),
                     fmt(1000 * s["ppm_gflops"], 2), fmt(s["train_seconds"], 1)])
    blocks = [Block("heading", "Measured"),
              Block("table", headers=["variant", "n", "mIoU (mean ± sd)", "95% CI", f"Δ vs {baseline or '-'}",
                                      "pixel acc", "95% CI", "mean class acc (all classes)"], rows=acc),
              Block("text", "mIoU and mean class accuracy: all classes, absent classes counting 0. 95% CI: "
                            "t-interval over seeds, clipped to [0, 100]."),
              Block("table", headers=["variant", "train img/s", "infer img/s", "latency p50 ms", mem, "params M",
                                      "GFLOPs", "PPM MFLOPs", "train s"] + (["head-only train img/s"] if head else []),
                    rows=[row + [fmt(h, 1)] for row, h in zip(cost, summary["head_train_img_s"], strict=True)]
                    if head else cost)]
    if head:
        blocks.append(Block("text", "Frozen features: train/infer img/s, latency, memory and FLOPs time the whole "
                                    "network on images; head-only train img/s is the rate at which the pyramid and "
                                    "head trained on the stored maps (median over seeds), and train s that "
                                    "training's wall time."))
    benched = sorted(v for v, src in zip(summary["variant"], summary["throughput_source"], strict=True)
                     if "bench/" in str(src))
    if benched:
        blocks.append(Block("text", "Throughput of " + ", ".join(benched) + " comes from bench/<variant>.json, "
                                    "measured once per variant alone on the machine after training; the other "
                                    "variants' from their runs (median over seeds)."))
    with_th = next((r for r in records if r.throughput.get("protocol")), None)
    benched_th = next((b for _, b in sorted((bench or {}).items()) if b.get("protocol")), None)
    th = benched_th or (with_th.throughput if with_th else {})
    if th:
        threads = "torch default" if benched_th else with_th.config["run"]["threads"] or "torch default"
        blocks.append(Block("text", f"Throughput protocol: {th.get('protocol', '')}; batch {th.get('batch_size')}, "
                                    f"{th.get('dtype')}, channels_last {th.get('channels_last')}, compile "
                                    f"{th.get('compile')}, device {th.get('device')}, torch threads {threads}; "
                                    f"memory: {th.get('memory_kind') or 'n/a'} (process RSS includes the data "
                                    "cache; CUDA figures are allocator peaks); FLOPs: "
                                    f"{th.get('flop_counter') or 'n/a'}."))
    first = done.drop_duplicates("variant") if len(done) else df.drop_duplicates("variant")
    varying = [a.column for a in axes.AXES if a.column in first and a.column not in axes_shown()
               and first[a.column].astype(str).nunique() > 1]
    cols = [a for a in axes_shown() if a in first] + varying
    blocks += [Block("text", semantics()),
               Block("table", headers=["variant", *cols],
                     rows=[[r["variant"], *(short(r[a]) for a in cols)] for _, r in first.iterrows()])]
    return blocks


def _delta(s: pd.Series, base: pd.Series | None) -> str:
    """A variant's mean mIoU less the baseline's, at the precision of the difference's sd (both sds combined)."""
    if base is None:
        return ""
    return signed(s["miou_mean"] - base["miou_mean"], decimals(math.hypot(s["miou_std"], base["miou_std"])))


def paper_blocks(paper: pd.DataFrame, summary: pd.DataFrame, table_name: str, matched: dict[str, str]
                 ) -> list[Block]:
    """The paper's table beside this study's variants, matched on the axes' values (`matched`: study variant ->
    paper row, study.results.claims.match_paper)."""
    by_row = {name: v for v, name in reversed(list(matched.items()))}  # a paper row's first study variant
    measured = {name: s for _, s in summary.iterrows() if (name := matched.get(s["variant"])) is not None
                and by_row[name] == s["variant"]}
    p_base = paper["miou"].iloc[0]
    m_base = measured.get(paper["variant"].iloc[0])

    def mine(v: str, key: str) -> str:
        s = measured.get(v)
        return "" if s is None else fmt(s[key], decimals(s["miou_std"] if key == "miou_mean" else s["acc_std"]))

    prow = [[v if by_row.get(v, v) == v else f"{v} ({by_row[v]})", fmt(pmiou), fmt(pa), signed(pmiou - p_base),
             mine(v, "miou_mean"), mine(v, "acc_mean"), _delta(measured[v], m_base) if v in measured else ""]
            for v, pmiou, pa in zip(paper["variant"], paper["miou"], paper["pixel_acc"], strict=True)]
    blocks = [Block("heading", f"Beside the paper ({table_name})"),
              Block("text", "Paper: ADE20K val, ResNet backbones, 150 classes (Zhao et al., CVPR 2017), mIoU over "
                            "all classes. Measured: this study's data and recipe. Compare directions and gaps, not "
                            "levels."),
              Block("table", headers=["variant", "paper mIoU", "paper pixel acc", "paper Δ", "measured mIoU",
                                      "measured pixel acc", "measured Δ"], rows=prow)]
    unmatched = [v for v in summary["variant"] if v not in matched]
    if unmatched:
        on_axes = any(a.column in paper.columns for a in axes.AXES)
        why = ("no row of the paper's table has their axis values, e.g. study-only options such as branch raw"
               if on_axes else "named differently from the paper's, or study-only options such as branch raw")
        blocks.append(Block("text", f"Variants without a paper row ({why}): " + ", ".join(unmatched) + "."))
    return blocks
