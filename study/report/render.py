"""One study folder -> reports/<study>/index.md and index.html (same content), figures, qualitative strips.

The report reads the results table, the manifest and the claims (study.results) and formats them: verdicts
first, then the measured table, the rule, the model's semantics, the paper beside, figures and provenance.
No timestamps: rendering twice gives identical bytes.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from study.atomic import atomic_write_bytes, atomic_write_text
from study.report import plots
from study.report.blocks import Block, ci, fmt, pm, to_html, to_markdown
from study.report.controls_block import controls_blocks
from study.report.verdicts import claim_blocks
from study.results.axes import AXES
from study.results.claims import judge_claims, load_paper_table
from study.results.images import bootstrap_mious
from study.results.search import search_summary
from study.results.summary import memory_label, protocol_warnings, summarize_variants
from study.results.table import ResultsError, load_manifest, load_records, read_table

CONVENTION = ("mIoU averages all classes of the data set, classes absent from the split counting 0 (the official "
              "PSPNet convention; `miou_present` in runs.csv is mmsegmentation's nan-mean over present classes). "
              "Mean class accuracy likewise averages all classes, absent counting 0 (`mean_acc_present`: nan-mean "
              "over present classes). Values in percent.")
SEMANTICS = " ".join(["Model semantics: in this harness every pyramid branch is pool -> 1x1 conv -> BN -> ReLU.",
                      *(a.note for a in AXES if a.note)])
AXES_SHOWN = tuple(a.column for a in AXES if a.shown)


def _measured_blocks(df: pd.DataFrame, summary: pd.DataFrame, baseline: str | None, records: list) -> list[Block]:
    done = df[df["status"] == "completed"]
    mem = memory_label(list(done["memory_kind"].astype(str))) if "memory_kind" in done else memory_label([])
    base = summary[summary["variant"] == baseline].iloc[0] if baseline in set(summary["variant"]) else None
    rows = []
    for _, s in summary.iterrows():
        delta = s["miou_mean"] - base["miou_mean"] if base is not None else math.nan
        seeds = " ".join(f"{seed}:{v:.2f}" for seed, v in zip(s["miou_seeds"], s["miou_values"], strict=True))
        rows.append([s["variant"], f"{s['n']}/{s['runs']}", pm(s["miou_mean"], s["miou_std"]),
                     ci(s["miou_ci_low"], s["miou_ci_high"]), seeds, fmt(delta), pm(s["acc_mean"], s["acc_std"]),
                     ci(s["acc_ci_low"], s["acc_ci_high"]), pm(s["macc_mean"], s["macc_std"]),
                     fmt(s["train_img_s"], 1), fmt(s["infer_img_s"], 1), fmt(s["latency_ms_p50"], 1),
                     fmt(s["peak_mem_mb"], 0), fmt(s["params_m"], 3), fmt(s["gflops"], 3),
                     fmt(1000 * s["ppm_gflops"], 2), fmt(s["train_seconds"], 1)])
    blocks = [Block("heading", "Measured"),
              Block("table", headers=["variant", "n", "mIoU", "95% CI", "per seed (seed:mIoU)",
                                      f"Δ vs {baseline or '-'}", "pixel acc", "95% CI",
                                      "mean class acc (all classes)", "train img/s", "infer img/s",
                                      "latency p50 ms", mem, "params M", "GFLOPs", "PPM MFLOPs", "train s"],
                    rows=rows),
              Block("text", "mIoU and mean class accuracy: all classes, absent classes counting 0. 95% CI: "
                            "t-interval over seeds, clipped to [0, 100].")]
    benched = sorted(v for v, src in zip(summary["variant"], summary["throughput_source"], strict=True)
                     if "bench/" in str(src))
    if benched:
        blocks.append(Block("text", "Throughput of " + ", ".join(benched) + " comes from bench/<variant>.json, "
                                    "measured once per variant alone on the machine after training; the other "
                                    "variants' from their runs (median over seeds)."))
    with_th = next((r for r in records if r.throughput), None)
    th = with_th.throughput if with_th else {}
    if th:
        threads = with_th.config["run"]["threads"] or "torch default"
        blocks.append(Block("text", f"Throughput protocol: {th.get('protocol', '')}; batch {th.get('batch_size')}, "
                                    f"{th.get('dtype')}, channels_last {th.get('channels_last')}, compile "
                                    f"{th.get('compile')}, device {th.get('device')}, torch threads {threads}; "
                                    f"memory: {th.get('memory_kind') or 'n/a'} (process RSS includes the data "
                                    "cache; CUDA figures are allocator peaks); FLOPs: "
                                    f"{th.get('flop_counter') or 'n/a'}."))
    first = done.drop_duplicates("variant") if len(done) else df.drop_duplicates("variant")
    varying = [a.column for a in AXES if a.column in first and a.column not in AXES_SHOWN
               and first[a.column].astype(str).nunique() > 1]
    cols = [a for a in AXES_SHOWN if a in first] + varying
    blocks += [Block("text", SEMANTICS),
               Block("table", headers=["variant", *cols],
                     rows=[[r["variant"], *(fmt(r[a]) for a in cols)] for _, r in first.iterrows()])]
    return blocks


def _paper_blocks(paper: pd.DataFrame, summary: pd.DataFrame, table_name: str) -> list[Block]:
    measured = dict(zip(summary["variant"], summary["miou_mean"], strict=True))
    measured_acc = dict(zip(summary["variant"], summary["acc_mean"], strict=True))
    p_base = paper["miou"].iloc[0]
    m_base = measured.get(paper["variant"].iloc[0], math.nan)
    prow = [[v, fmt(pmiou), fmt(pa), fmt(pmiou - p_base), fmt(measured.get(v, math.nan)),
             fmt(measured_acc.get(v, math.nan)), fmt(measured.get(v, math.nan) - m_base)]
            for v, pmiou, pa in zip(paper["variant"], paper["miou"], paper["pixel_acc"], strict=True)]
    blocks = [Block("heading", f"Beside the paper ({table_name})"),
              Block("text", "Paper: ADE20K val, ResNet backbones, 150 classes (Zhao et al., CVPR 2017), mIoU over "
                            "all classes. Measured: this study's data and recipe. Compare directions and gaps, not "
                            "levels."),
              Block("table", headers=["variant", "paper mIoU", "paper pixel acc", "paper Δ", "measured mIoU",
                                      "measured pixel acc", "measured Δ"], rows=prow)]
    unmatched = [v for v in summary["variant"] if v not in set(paper["variant"])]
    if unmatched:
        blocks.append(Block("text", "Variants without a paper row (named differently from the paper's, or "
                                    "study-only options such as branch raw): " + ", ".join(unmatched) + "."))
    return blocks


def build_blocks(study_dir: Path, out_dir: Path) -> list[Block]:
    manifest = load_manifest(study_dir)
    df = read_table(study_dir)
    records = load_records(study_dir)
    baseline = manifest.baseline
    paper = load_paper_table(manifest.paper_table)
    summary = summarize_variants(df)
    fig_dir = out_dir / "figures"
    blocks: list[Block] = [Block("heading", f"Study: {manifest.name}", level=1)]
    if manifest.description:
        blocks.append(Block("text", manifest.description))
    completed = int((df["status"] == "completed").sum())
    blocks.append(Block("text", f"{len(df)} runs, {completed} completed, over {df['variant'].nunique()} variants and "
                                f"seeds {', '.join(str(s) for s in sorted(df['seed'].unique()))}. {CONVENTION}"))
    if completed == 0:
        blocks.append(Block("text", "No run completed: there is nothing to compare. The failures are listed below."))
    try:
        images = bootstrap_mious(records)
    except ValueError as e:
        raise ResultsError(f"{study_dir}: {e}") from None
    blocks += controls_blocks(df) if "control" in manifest.name else []
    blocks += claim_blocks(judge_claims(df, paper, images=images), fig_dir, images)
    blocks += _measured_blocks(df, summary, baseline, records)
    if paper is not None:
        blocks += _paper_blocks(paper, summary, str(manifest.paper_table))
    warnings = protocol_warnings(df)
    if warnings:
        blocks += [Block("heading", "Protocol warnings"), Block("list", items=warnings)]

    figures = []
    done = df[df["status"] == "completed"]
    if completed:
        figures.append(("mIoU per variant (all classes, absent count 0)", plots.bars(summary, fig_dir / "miou_bars.png")))
        figures.append(("Accuracy vs throughput", plots.pareto(summary, fig_dir / "pareto.png")))
    figures.append(("Training curves", plots.curves(records, list(summary["variant"]), fig_dir / "curves.png")))
    iou_cols = [c for c in done.columns if c.startswith("iou/")]
    if iou_cols and completed:
        per_class = 100 * done.groupby("variant", sort=False)[iou_cols].mean()
        per_class.columns = [c.removeprefix("iou/") for c in iou_cols]
        figures.append(("Per-class IoU", plots.heatmap(per_class, fig_dir / "per_class_iou.png")))
    if manifest.kind == "search":
        trials_csv = study_dir / "trials.csv"
        if trials_csv.exists():
            blocks += _search_blocks(search_summary(pd.read_csv(trials_csv)))
            figures.append(("Optimisation history", plots.search_history(
                pd.read_csv(trials_csv), fig_dir / "search_history.png",
                manifest.objective.get("direction", "maximize"))))
        imp = study_dir / "importances.json"
        if imp.exists():
            figures.append(("Hyperparameter importances",
                            plots.importances(json.loads(imp.read_text()), fig_dir / "importances.png")))
    blocks.append(Block("heading", "Figures"))
    for title, file in figures:
        if file:
            blocks.append(Block("figure", title, items=[f"figures/{file}"]))

    quals = _copy_qualitative(records, study_dir, out_dir, baseline, summary)
    if quals:
        blocks.append(Block("heading", "Qualitative predictions (image | truth | prediction)"))
        for title, rel in quals:
            blocks.append(Block("figure", title, items=[rel]))

    bad = df[df["status"] != "completed"]
    if len(bad):
        blocks += [Block("heading", "Failed and pruned runs"),
                   Block("table", headers=["variant", "seed", "status", "error"],
                         rows=[[r["variant"], r["seed"], r["status"], r["error"]] for _, r in bad.iterrows()])]

    prov = next((r.provenance for r in records), {})
    items = [f"study file: {manifest.study_file or '-'}", f"base config: {manifest.base_config or '-'}",
             f"git: {', '.join(sorted(df['git_sha'].astype(str).unique()))}",
             f"environment: torch {prov.get('torch', '?')}, timm {prov.get('timm', '?')}, "
             f"python {prov.get('python', '?')}, device {prov.get('device', '?')}",
             f"config hashes: {df['config_hash'].nunique()} distinct over {len(df)} runs",
             "weights: " + ", ".join(sorted({str(r.provenance.get("weights", "not recorded")) for r in records}))]
    protocols = sorted({json.dumps(r.provenance["eval_protocol"], sort_keys=True) for r in records
                        if r.provenance.get("eval_protocol")})
    items += [f"evaluation protocol: {p}" for p in protocols]
    blocks += [Block("heading", "Provenance"), Block("list", items=items)]
    if manifest.command:
        again = f"--study-file {manifest.study_file}" if manifest.study_file else f"results/{manifest.name}"
        blocks += [Block("text", "Reproduce:"), Block("code", manifest.command + f"\npython -m study.report {again}")]
    return blocks


def _search_blocks(summary: dict) -> list[Block]:
    """Trials by state, the best trials with their parameters, and whether the search lands on the paper's pyramid."""
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary["counts"].items())
    blocks = [Block("heading", "Search"), Block("text", f"Trials: {counts}.")]
    if summary["best"]:
        keys = summary["params"]
        rows = [[b["number"], fmt(100 * b["value"])] + [b[k] for k in keys] for b in summary["best"]]
        blocks.append(Block("table", headers=["trial", "mIoU"] + keys, rows=rows))
        paper = summary["paper"]
        if paper["best_is_paper"] is not None:
            choice = "the paper's pyramid (bins 1,2,3,6, average pooling, DR) over " + ", ".join(paper["keys"])
            if paper["best_is_paper"]:
                verdict = f"The best completed trial is {choice}."
            elif paper["best_paper_rank"]:
                verdict = (f"The best completed trial is not {choice}; the best trial that is ranks "
                           f"{paper['best_paper_rank']} of {summary['completed']} completed "
                           f"(mIoU {100 * paper['best_paper_value']:.2f}).")
            else:
                verdict = f"No completed trial is {choice}."
            blocks.append(Block("text", verdict + " One seed per trial, and pruned trials stopped early: a "
                                                  "search ranks configurations, it does not test a claim."))
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


def render_study(study_dir: Path, reports_dir: Path) -> Path:
    """Write reports/<study>/ for one results/<study>/ folder; returns the report folder."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ResultsError(f"{study_dir}: results folder not found")
    name = load_manifest(study_dir).name
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
