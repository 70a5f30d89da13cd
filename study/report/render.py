"""One study folder -> reports/<study>/index.md and index.html (same content), figures, qualitative strips.

The content is built once as a list of blocks (heading, text, table, figure, list) and written twice; every
string from configs or data is escaped in the HTML. No timestamps: rendering twice gives identical bytes.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from study.atomic import atomic_write_bytes, atomic_write_text
from study.report import plots
from study.results.claims import judge_claims, load_paper_table
from study.results.stats import MIN_SEEDS, summarize
from study.results.table import ResultsError, load_records, load_study_manifest, read_table

CONVENTION = ("mIoU averages all classes of the data set, classes absent from the split counting 0 (the official "
              "PSPNet convention; `miou_present` in runs.csv is mmsegmentation's nan-mean over present classes). "
              "Values in percent.")
PROTOCOL_KEYS = ("device", "dtype", "bench_batch", "bench_size", "eval_mode", "effective_batch", "bn", "world_size",
                 "steps", "crop", "data")


@dataclass
class Block:
    kind: str  # heading | text | table | figure | list | code
    text: str = ""
    level: int = 2
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


def _fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.2f} ± {std:.2f}" if not math.isnan(std) else f"{mean:.2f}"


def _ci(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"


def summarize_variants(df: pd.DataFrame) -> pd.DataFrame:
    """One row per variant over its completed seeds (percent for accuracies)."""
    rows = []
    for variant, g in df.groupby("variant", sort=False):
        ok = g[g["status"] == "completed"]
        m, p = summarize(100 * ok["miou"]), summarize(100 * ok["pixel_acc"])
        rows.append({"variant": variant, "n": m["n"], "runs": len(g),
                     "miou_mean": m["mean"], "miou_std": m["std"], "miou_ci_low": m["ci_low"],
                     "miou_ci_high": m["ci_high"], "miou_values": list(100 * ok["miou"]),
                     "acc_mean": p["mean"], "acc_std": p["std"], "acc_ci_low": p["ci_low"], "acc_ci_high": p["ci_high"],
                     "train_img_s": ok["train_img_s"].median(), "infer_img_s": ok["infer_img_s"].median(),
                     "latency_ms_p50": ok["latency_ms_p50"].median(), "peak_mem_mb": ok["peak_mem_mb"].median(),
                     "params_m": ok["params_m"].median(), "gflops": ok["gflops"].median(),
                     "ppm_gflops": ok["ppm_gflops"].median(), "train_seconds": ok["train_seconds"].median()})
    return pd.DataFrame(rows)


def build_blocks(study_dir: Path, out_dir: Path) -> list[Block]:
    manifest = load_study_manifest(study_dir)
    df = read_table(study_dir)
    records = load_records(study_dir)
    name = manifest.get("name", study_dir.name)
    baseline = manifest.get("baseline")
    paper = load_paper_table(manifest.get("paper_table"))
    summary = summarize_variants(df)
    fig_dir = out_dir / "figures"
    blocks: list[Block] = [Block("heading", f"Study: {name}", level=1)]
    if manifest.get("description"):
        blocks.append(Block("text", manifest["description"]))
    completed = int((df["status"] == "completed").sum())
    blocks.append(Block("text", f"{len(df)} runs, {completed} completed, over {df['variant'].nunique()} variants and "
                                f"seeds {', '.join(str(s) for s in sorted(df['seed'].unique()))}. {CONVENTION}"))
    if completed == 0:
        blocks.append(Block("text", "No run completed: there is nothing to compare. The failures are listed below."))

    # measured table
    base_row = summary[summary["variant"] == baseline].iloc[0] if baseline in set(summary["variant"]) else None
    rows = []
    for _, s in summary.iterrows():
        delta = s["miou_mean"] - base_row["miou_mean"] if base_row is not None else math.nan
        rows.append([s["variant"], f"{s['n']}/{s['runs']}", _pm(s["miou_mean"], s["miou_std"]),
                     _ci(s["miou_ci_low"], s["miou_ci_high"]), _fmt(delta), _pm(s["acc_mean"], s["acc_std"]),
                     _ci(s["acc_ci_low"], s["acc_ci_high"]), _fmt(s["train_img_s"], 1), _fmt(s["infer_img_s"], 1),
                     _fmt(s["latency_ms_p50"], 1), _fmt(s["peak_mem_mb"], 0), _fmt(s["params_m"], 3),
                     _fmt(s["gflops"], 3), _fmt(1000 * s["ppm_gflops"], 2), _fmt(s["train_seconds"], 1)])
    blocks += [Block("heading", "Measured"),
               Block("table", headers=["variant", "n", "mIoU", "95% CI", f"Δ vs {baseline or '-'}", "pixel acc",
                                       "95% CI", "train img/s", "infer img/s", "latency p50 ms", "peak MB",
                                       "params M", "GFLOPs", "PPM MFLOPs", "train s"], rows=rows)]
    with_th = next((r for r in records if r.throughput), None)
    th = with_th.throughput if with_th else {}
    if th:
        threads = with_th.config["run"]["threads"] or "torch default"
        blocks.append(Block("text", f"Throughput protocol: {th.get('protocol', '')}; batch {th.get('batch_size')}, "
                                    f"{th.get('dtype')}, channels_last {th.get('channels_last')}, compile "
                                    f"{th.get('compile')}, device {th.get('device')}, torch threads {threads} (inside the "
                                    f"study run, next to its other workers); memory: "
                                    f"{th.get('memory_kind') or 'n/a'}; FLOPs: {th.get('flop_counter') or 'n/a'}."))

    # paper beside measured
    if paper is not None:
        measured = dict(zip(summary["variant"], summary["miou_mean"], strict=True))
        measured_acc = dict(zip(summary["variant"], summary["acc_mean"], strict=True))
        p_base = paper["miou"].iloc[0]
        m_base = measured.get(paper["variant"].iloc[0], math.nan)
        prow = [[v, _fmt(pm), _fmt(pa), _fmt(pm - p_base), _fmt(measured.get(v, math.nan)),
                 _fmt(measured_acc.get(v, math.nan)), _fmt(measured.get(v, math.nan) - m_base)]
                for v, pm, pa in zip(paper["variant"], paper["miou"], paper["pixel_acc"], strict=True)]
        blocks += [Block("heading", f"Beside the paper ({manifest.get('paper_table')})"),
                   Block("text", "Paper: ADE20K val, ResNet backbones, 150 classes (Zhao et al., CVPR 2017). "
                                 "Measured: this study's data and recipe. Compare directions and gaps, not levels."),
                   Block("table", headers=["variant", "paper mIoU", "paper pixel acc", "paper Δ", "measured mIoU",
                                           "measured pixel acc", "measured Δ"], rows=prow)]
        unmatched = [v for v in summary["variant"] if v not in set(paper["variant"])]
        if unmatched:
            blocks.append(Block("text", "Variants without a paper row (named differently from the paper's): "
                                        + ", ".join(unmatched) + "."))

    # claims
    claims = judge_claims(df, paper)
    blocks.append(Block("heading", "The paper's claims"))
    if not claims:
        blocks.append(Block("text", "No pair of variants in this study isolates one of the paper's claims."))
    else:
        n_max = max(c["n"] for c in claims)
        if n_max < MIN_SEEDS:
            blocks.append(Block("text", f"Too few seeds for a verdict: at least {MIN_SEEDS} shared seeds are needed "
                                        f"(this study has {n_max}). Differences are shown without one."))
        blocks.append(Block("table", headers=["claim", "better", "worse", "seeds", "Δ mIoU", "95% CI (bootstrap)",
                                              "p (paired t)", "paper Δ", "verdict"],
                            rows=[[c["claim"], c["better"], c["worse"], c["n"], _fmt(c["diff"]),
                                   _ci(c["ci_low"], c["ci_high"]), _fmt(c["p_value"], 3), _fmt(c["paper_diff"]),
                                   c["verdict"]] for c in claims]))
        blocks.append(Block("text", "Δ is the mean over shared seeds of (better - worse) in mIoU points, with a "
                                    "percentile bootstrap 95% CI. Supported: the CI lies above 0 and the paired "
                                    "t-test gives p < 0.05; contradicted: the same below 0; inconclusive otherwise "
                                    "(with few seeds the bootstrap alone is too narrow)."))

    # protocol warnings
    warnings = []
    done = df[df["status"] == "completed"]
    for key in PROTOCOL_KEYS:
        if key in done and done[key].astype(str).nunique() > 1:
            values = ", ".join(sorted(done[key].astype(str).unique()))
            warnings.append(f"rows differ in {key}: {values}")
    if warnings:
        blocks += [Block("heading", "Protocol warnings"), Block("list", items=warnings)]

    # figures
    figures = []
    if completed:
        figures.append(("mIoU per variant", plots.bars(summary, fig_dir / "miou_bars.png")))
        figures.append(("Accuracy vs throughput", plots.pareto(summary, fig_dir / "pareto.png")))
    figures.append(("Training curves", plots.curves(records, list(summary["variant"]), fig_dir / "curves.png")))
    iou_cols = [c for c in done.columns if c.startswith("iou/")]
    if iou_cols and completed:
        per_class = 100 * done.groupby("variant", sort=False)[iou_cols].mean()
        per_class.columns = [c.removeprefix("iou/") for c in iou_cols]
        figures.append(("Per-class IoU", plots.heatmap(per_class, fig_dir / "per_class_iou.png")))
    if manifest.get("kind") == "search":
        trials_csv = study_dir / "trials.csv"
        if trials_csv.exists():
            figures.append(("Optimisation history", plots.search_history(
                pd.read_csv(trials_csv), fig_dir / "search_history.png",
                manifest.get("objective", {}).get("direction", "maximize"))))
        imp = study_dir / "importances.json"
        if imp.exists():
            figures.append(("Hyperparameter importances",
                            plots.importances(json.loads(imp.read_text()), fig_dir / "importances.png")))
    blocks.append(Block("heading", "Figures"))
    for title, file in figures:
        if file:
            blocks.append(Block("figure", title, items=[f"figures/{file}"]))

    # qualitative
    quals = _copy_qualitative(records, study_dir, out_dir, baseline, summary)
    if quals:
        blocks.append(Block("heading", "Qualitative predictions (image | truth | prediction)"))
        for title, rel in quals:
            blocks.append(Block("figure", title, items=[rel]))

    # failures
    bad = df[df["status"] != "completed"]
    if len(bad):
        blocks += [Block("heading", "Failed and pruned runs"),
                   Block("table", headers=["variant", "seed", "status", "error"],
                         rows=[[r["variant"], r["seed"], r["status"], r["error"]] for _, r in bad.iterrows()])]

    # provenance
    prov = next((r.provenance for r in records), {})
    items = [f"study file: {manifest.get('study_file', '-')}", f"base config: {manifest.get('base_config', '-')}",
             f"git: {', '.join(sorted(df['git_sha'].astype(str).unique()))}",
             f"environment: torch {prov.get('torch', '?')}, timm {prov.get('timm', '?')}, "
             f"python {prov.get('python', '?')}, device {prov.get('device', '?')}",
             f"config hashes: {df['config_hash'].nunique()} distinct over {len(df)} runs"]
    blocks += [Block("heading", "Provenance"), Block("list", items=items)]
    if manifest.get("command"):
        blocks += [Block("text", "Reproduce:"), Block("code", manifest["command"] + f"\npython -m study.report {study_dir}")]
    return blocks


def _copy_qualitative(records: list, study_dir: Path, out_dir: Path, baseline: str | None,
                      summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Strips of the baseline and the best variant (lowest seed), copied into the report folder."""
    ok = summary.dropna(subset=["miou_mean"])
    if ok.empty:
        return []
    best = ok.sort_values("miou_mean", ascending=False, kind="stable").iloc[0]["variant"]
    wanted = [v for v in dict.fromkeys([baseline, best]) if v]
    out = []
    for variant in wanted:
        runs = sorted((r for r in records if r.variant == variant and r.status == "completed"), key=lambda r: r.seed)
        if not runs:
            continue
        run = runs[0]
        for rel in run.artifacts.get("qualitative", []):
            src = study_dir / "runs" / run.id / rel
            if not src.exists():
                continue
            dest = out_dir / "qualitative" / f"{run.id}_{Path(rel).name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest, src.read_bytes())
            role = "baseline" if variant == baseline else "best"
            out.append((f"{variant} ({role}), seed {run.seed}, {Path(rel).stem}", f"qualitative/{dest.name}"))
    return out


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"{'#' * b.level} {b.text}")
        elif b.kind == "text":
            parts.append(b.text)
        elif b.kind == "table":
            parts.append(tabulate(b.rows, headers=b.headers, tablefmt="github", disable_numparse=True))
        elif b.kind == "figure":
            parts.append(f"![{b.text}]({b.items[0]})")
        elif b.kind == "list":
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "code":
            parts.append(f"```bash\n{b.text}\n```")
    return "\n\n".join(parts) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;"
       "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
       "img{max-width:100%}figure{margin:1em 0}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}")


def to_html(blocks: list[Block]) -> str:
    e = html.escape
    title = next((b.text for b in blocks if b.kind == "heading"), "report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
             f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif b.kind == "text":
            parts.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "figure":
            parts.append(f'<figure><img src="{e(b.items[0])}" alt="{e(b.text)}"><figcaption>{e(b.text)}'
                         "</figcaption></figure>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "code":
            parts.append(f"<pre><code>{e(b.text)}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_study(study_dir: Path, reports_dir: Path) -> Path:
    """Write reports/<study>/ for one results/<study>/ folder; returns the report folder."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ResultsError(f"{study_dir}: results folder not found")
    name = load_study_manifest(study_dir).get("name", study_dir.name)
    out_dir = Path(reports_dir) / name
    staging = Path(reports_dir) / f".{name}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        blocks = build_blocks(study_dir, staging)
        atomic_write_text(staging / "index.md", to_markdown(blocks))
        atomic_write_text(staging / "index.html", to_html(blocks))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def render_index(reports_dir: Path, studies: list[tuple[str, str]]) -> None:
    """reports/index.md listing every rendered study (name, description)."""
    lines = ["# Reports", ""] + [f"- [{name}]({name}/index.md): {desc}" for name, desc in sorted(studies)]
    atomic_write_text(Path(reports_dir) / "index.md", "\n".join(lines) + "\n")
