"""One study folder -> reports/<study>/index.md and index.html (same content), figures, qualitative strips.

The report reads the results table, the manifest and the claims (study.results) and formats them. It opens with
the conclusion in sentences, then what the study is for: a search its best configurations and trials, a controls
study its controls, a grid its verdicts; then every run per seed, the measured tables, the paper beside, figures,
failures and provenance. No timestamps: rendering twice gives identical bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from study.atomic import atomic_write_bytes, atomic_write_text
from study.manifest import MANIFEST_FILE, Comparison, parse_aa
from study.record import seeds_text
from study.registration import added_after
from study.report import plots, search_section
from study.report.aa_block import aa_blocks, aa_line
from study.report.blocks import PRECISION_RULE, Block, to_html, to_markdown
from study.report.conclusion import conclusion_blocks, data_text, one_line
from study.report.confirm_block import confirmation_blocks, replicated_by_blocks
from study.report.controls_block import (
    controls_blocks,
    controls_confirmation_blocks,
    controls_lead,
    controls_line,
    controls_replicated_by_blocks,
    null_caveat,
)
from study.report.measured import every_run_blocks, measured_blocks, paper_blocks
from study.report.registration_block import registration_blocks
from study.report.verdicts import claim_blocks
from study.results.aa import judge_aa
from study.results.axes import RECIPE_COLUMN, TRAINING
from study.results.claims import judge_claims, load_paper_table, match_paper, row_summary
from study.results.controls import judge_controls
from study.results.images import bootstrap_mious
from study.results.search import pruned_steps
from study.results.sequential import SequentialPlan
from study.results.summary import protocol_warnings, study_facts, summarize_variants
from study.results.table import ResultsError, load_bench, load_manifest, load_records, read_table

CONVENTION = ("mIoU averages all classes of the data set, classes absent from the split counting 0 (the official "
              "PSPNet convention; `miou_present` in runs.csv is mmsegmentation's nan-mean over present classes). "
              "Mean class accuracy likewise averages all classes, absent counting 0 (`mean_acc_present`: nan-mean "
              "over present classes). Values in percent.")
SUMMARY_FILE = "summary.json"  # reports/<study>/summary.json: the index's line for the study


SECTIONS = {"real": ("Real data", "evidence about the paper's claims on real images"),
            "probe": ("Mechanism checks on the context probe", "data built so that the paper's mechanism can show, with "
                      "controls; not evidence about ADE20K")}  # the index's sections, in order, by summary["section"]


def build_blocks(study_dir: Path, out_dir: Path) -> tuple[list[Block], dict[str, Any]]:
    """The report's blocks, and the index's entry for the study (conclusion, data, seeds, date)."""
    manifest = load_manifest(study_dir)
    df = read_table(study_dir)
    records = load_records(study_dir)
    kind = manifest.kind
    paper = load_paper_table(manifest.paper_table)
    summary = summarize_variants(df)
    fig_dir = out_dir / "figures"
    facts = study_facts(df, records)
    warnings = protocol_warnings(df)
    try:
        images = bootstrap_mious(records)
    except ValueError as e:
        raise ResultsError(f"{study_dir}: {e}") from None
    try:  # a study that added seeds in rounds is judged at its plan's looks
        plan = SequentialPlan.from_dict(manifest.seeds_on_demand) if manifest.seeds_on_demand else None
    except (ValueError, TypeError) as e:
        raise ResultsError(f"{study_dir / MANIFEST_FILE}: seeds_on_demand: {e}") from None
    # a controls study is judged by what its data's construction implies, not by the paper's claims
    try:
        comparisons = [Comparison.from_dict(c) for c in manifest.controls or ()]
        pair = parse_aa(manifest.aa, set(df["variant"]) | set(manifest.variants)) if manifest.aa else None
    except ValueError as e:
        raise ResultsError(f"{study_dir / MANIFEST_FILE}: {e}") from None
    controls = judge_controls(df, comparisons) if kind == "controls" else None
    aa = judge_aa(df, pair, margin=manifest.equivalence_margin, planned=manifest.seeds,
                  images=images.mious) if kind == "aa" and pair else None
    late = added_after(manifest.registrations)
    claims = judge_claims(df, paper, images=images, plan=plan, margin=manifest.equivalence_margin, added_after=late) \
        if kind in ("grid", "search") else []
    sensitivity = judge_claims(df, paper, plan=plan, margin=manifest.equivalence_margin, exclude_untrained=False) \
        if claims and facts["untrained"] else None
    trials, search, importances = search_section.load(study_dir) if kind == "search" else (None, None, {})
    amp = next((bool(r.config.get("train", {}).get("amp")) for r in records if "amp" in r.config.get("train", {})),
               None)

    blocks: list[Block] = [Block("heading", f"Study: {manifest.name}", level=1)]
    if manifest.description:
        blocks.append(Block("text", manifest.description))
    blocks += conclusion_blocks(facts=facts, claims=claims, summary=summary, warnings=warnings, kind=kind, amp=amp,
                                lead=search_section.lead(search) if search else
                                controls_lead(controls or [], aa) if kind in ("controls", "aa") else (),
                                own_caveats=[*(manifest.caveats or ()), *_null_caveats(study_dir, df, claims)])
    if facts["completed"] == 0:
        blocks.append(Block("text", "No run completed: there is nothing to compare. The failures are listed below."))
    if kind == "search":
        blocks += search_section.search_blocks(summary=search, trials=trials, importances=importances, df=df,
                                               records=records, fig_dir=fig_dir,
                                               direction=manifest.objective.get("direction", "maximize"))
    if controls:
        blocks += controls_blocks(df, controls)
    if aa is not None:
        blocks += aa_blocks(aa, fig_dir)
    if claims or kind == "grid":
        blocks += claim_blocks(claims, fig_dir, images, sensitivity)
    blocks += registration_blocks(manifest.registrations, facts["runs"])
    if manifest.confirms and kind == "controls":
        blocks += controls_confirmation_blocks(_original_controls(study_dir.parent / manifest.confirms),
                                               controls or [], manifest.confirms)
    elif manifest.confirms:
        blocks += confirmation_blocks(_original_claims(study_dir.parent / manifest.confirms, paper), claims,
                                      manifest.confirms)
    if claims:
        blocks += replicated_by_blocks(claims, _replications(study_dir, manifest.name, paper))
    if controls:
        blocks += controls_replicated_by_blocks(controls, _replications(study_dir, manifest.name, paper,
                                                                        judge=_original_controls))
    if kind != "search":
        blocks += every_run_blocks(summary, facts["untrained"], fig_dir)
        blocks += measured_blocks(df, summary, manifest.baseline, records, load_bench(study_dir))
    if paper is not None:
        blocks += paper_blocks(paper, summary, str(manifest.paper_table), match_paper(paper, df))
    if warnings:
        blocks += [Block("heading", "Protocol warnings"), Block("list", items=warnings)]
    blocks += _figure_blocks(df, summary, records, fig_dir)
    blocks += _qualitative_blocks(records, study_dir, out_dir, manifest.baseline, summary)
    blocks += _failure_blocks(df, records, pruned=kind != "search")
    blocks += _provenance_blocks(df, records, manifest)
    return blocks, _entry(manifest, facts, claims, controls, aa, search)


def _entry(manifest: Any, facts: dict[str, Any], claims: list, controls: list | None, aa: dict | None,
           search: dict | None) -> dict[str, Any]:
    """The study's summary.json: the index's line (kind, section, conclusion, data, seeds, date) and every row."""
    kind, days = manifest.kind, facts["dates"]
    parts = ([controls_line(controls)] if controls else []) + ([aa_line(aa)] if aa is not None else [])
    line = "; ".join(parts) if kind in ("controls", "aa") else one_line(kind, claims, search)
    section = "probe" if facts["data"] and all(d == "probe" for d in facts["data"]) else "real"
    return {"kind": kind, "section": section, "description": manifest.description, "conclusion": line,
            "data": data_text(facts), "seeds": seeds_text(facts["seeds"]), "date": days[1] if days else "",
            "claims": [row_summary(c) for c in claims], "m": manifest.equivalence_margin,
            "controls": [_plain(r) for r in controls or []], "aa": _plain(aa) if aa is not None else None}


def _plain(value: Any) -> Any:
    """A result as JSON values: nan as None, tuples as lists, numpy scalars as Python numbers, a dataclass row as
    its fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a row: its fields, its verdict in words
        words = {k: getattr(value, k) for k in ("label", "rule_label", "false") if hasattr(value, k)}
        value = dataclasses.asdict(value) | {"verdict" if k == "label" else k: v for k, v in words.items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _replications(study_dir: Path, name: str, paper: pd.DataFrame | None,
                  judge: Callable[[Path], list[Any] | None] | None = None) -> list[tuple[str, str, list[Any]]]:
    """(name, description, rows) of every study beside this one whose study file confirms it, by name: its claim
    rows, or what `judge(folder)` gives (a controls study's comparisons)."""
    found = []
    for folder in sorted(p for p in study_dir.parent.iterdir() if p != study_dir and (p / MANIFEST_FILE).is_file()):
        other = load_manifest(folder)
        if other.confirms == name:
            rows = judge(folder) if judge else _original_claims(folder, paper)
            found.append((other.name, other.description, rows or []))
    return found


def _null_caveats(study_dir: Path, df: pd.DataFrame, claims: list) -> list[str]:
    """For a study with claim rows: a caveat from each controls study beside it that ran on the same data with the
    same training recipe (the results table's recipe column and its training axes), where a null comparison gained
    (study.report.controls_block.null_caveat)."""
    keys = [c for c in ("data", RECIPE_COLUMN, *(a.column for a in TRAINING)) if c in df.columns]
    if not claims or "data" not in keys:
        return []
    same, out = {c: set(df[c].astype(str)) for c in keys}, []
    for folder in sorted(p for p in study_dir.parent.iterdir() if p != study_dir and (p / MANIFEST_FILE).is_file()):
        other = load_manifest(folder)
        if other.kind != "controls" or not other.controls:
            continue
        table = read_table(folder)
        if any(c not in table.columns or set(table[c].astype(str)) != same[c] for c in keys):
            continue  # another data set or another recipe: its nulls bound nothing here
        try:
            rows = judge_controls(table, [Comparison.from_dict(c) for c in other.controls])
        except (ValueError, TypeError) as e:
            raise ResultsError(f"{folder / MANIFEST_FILE}: {e}") from None
        out += [text for text in [null_caveat(other.name, rows, claims)] if text]
    return out


def _original_claims(folder: Path, paper: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """The claim rows of the study a confirmation re-runs, judged from its folder beside this one (None: absent)."""
    if not (folder / MANIFEST_FILE).is_file():
        return None
    original = load_manifest(folder)
    return judge_claims(read_table(folder), paper, margin=original.equivalence_margin)


def _original_controls(folder: Path) -> list[Any] | None:
    """The control comparisons of the controls study a confirmation re-runs, judged from its folder (None: absent)."""
    if not (folder / MANIFEST_FILE).is_file():
        return None
    original = load_manifest(folder)
    try:
        comparisons = [Comparison.from_dict(c) for c in original.controls or ()]
    except ValueError as e:
        raise ResultsError(f"{folder / MANIFEST_FILE}: {e}") from None
    return judge_controls(read_table(folder), comparisons)


def _figure_blocks(df: pd.DataFrame, summary: pd.DataFrame, records: list, fig_dir: Path) -> list[Block]:
    done = df[df["status"] == "completed"]
    figures = []
    if len(done):
        figures.append(("Accuracy vs throughput", plots.pareto(summary, fig_dir / "pareto.png")))
    figures.append(("Training curves", plots.curves(records, list(summary["variant"]), fig_dir / "curves.png")))
    iou_cols = [c for c in done.columns if c.startswith("iou/")]
    if iou_cols and len(done):
        per_class = 100 * done.groupby("variant", sort=False)[iou_cols].mean()
        per_class.columns = [c.removeprefix("iou/") for c in iou_cols]
        figures.append(("Per-class IoU", plots.heatmap(per_class, fig_dir / "per_class_iou.png")))
    shown = [Block("figure", title, items=[f"figures/{file}"]) for title, file in figures if file]
    return [Block("heading", "Figures"), *shown] if shown else []


def _qualitative_blocks(records: list, study_dir: Path, out_dir: Path, baseline: str | None,
                        summary: pd.DataFrame) -> list[Block]:
    quals = _copy_qualitative(records, study_dir, out_dir, baseline, summary)
    if not quals:
        return []
    return [Block("heading", "Qualitative predictions (image | truth | prediction)"),
            *(Block("figure", title, items=[rel]) for title, rel in quals)]


def _failure_blocks(df: pd.DataFrame, records: list, pruned: bool = True) -> list[Block]:
    """The failed runs with their errors, and (unless a search's trials section said it) the pruned count."""
    failed = df[df["status"] == "failed"]
    steps = pruned_steps(records) if pruned else {}
    if not len(failed) and not steps:
        return []
    blocks = [Block("heading", "Failed and pruned runs")]
    if len(failed):
        blocks.append(Block("table", headers=["variant", "seed", "status", "error"],
                            rows=[[r["variant"], r["seed"], r["status"], r["error"]] for _, r in failed.iterrows()]))
    if steps:
        at = ", ".join(f"step {s} ({n})" for s, n in steps.items())
        blocks.append(Block("text", f"Pruned: {sum(steps.values())} runs, stopped at {at}."))
    return blocks


def _provenance_blocks(df: pd.DataFrame, records: list, manifest: Any) -> list[Block]:
    prov = next((r.provenance for r in records), {})
    items = [f"study file: {manifest.study_file or '-'}", f"base config: {manifest.base_config or '-'}",
             f"git: {', '.join(sorted(df['git_sha'].astype(str).unique()))}",
             f"environment: torch {prov.get('torch', '?')}, timm {prov.get('timm', '?')}, "
             f"python {prov.get('python', '?')}, device {prov.get('device', '?')}",
             f"config hashes: {df['config_hash'].nunique()} distinct over {len(df)} runs",
             "weights: " + ", ".join(sorted({str(r.provenance.get("weights", "not recorded")) for r in records}))]
    packs = [r.provenance["packed"]["members"] for r in records if r.provenance.get("packed")]
    if packs:
        size = f"{min(packs)}" if min(packs) == max(packs) else f"{min(packs)}-{max(packs)}"
        items.append(f"execution: {len(packs)} of {len(records)} runs trained packed, {size} seeds of a variant as one "
                     f"network (each its own initialisation, data, checkpoint and record)")
    protocols = sorted({json.dumps(r.provenance["eval_protocol"], sort_keys=True) for r in records
                        if r.provenance.get("eval_protocol")})
    items += [f"evaluation protocol: {p}" for p in protocols]
    blocks = [Block("heading", "Provenance"), Block("list", items=items)]
    if manifest.command:
        again = f"--study-file {manifest.study_file}" if manifest.study_file else f"results/{manifest.name}"
        blocks += [Block("text", "Reproduce:"), Block("code", manifest.command + f"\npython -m study.report {again}")]
    return blocks + [Block("heading", "How to read the numbers"), Block("text", CONVENTION),
                     Block("text", PRECISION_RULE)]


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
        blocks, entry = build_blocks(study_dir, staging)
        atomic_write_text(staging / "index.md", to_markdown(blocks))
        atomic_write_text(staging / "index.html", to_html(blocks))
        atomic_write_text(staging / SUMMARY_FILE, json.dumps(entry, indent=2, sort_keys=True, allow_nan=False) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def families_text(claims: int, rows: int, controls: int, alpha: float = 0.05) -> str:
    """What the index's many Holm families mean for a reader who looks across studies."""
    if not claims and not controls:
        return "No study here judges a claim."
    text = (f"Multiplicity: these reports hold {claims} Holm famil{'ies' if claims != 1 else 'y'} of claim rows "
            f"({rows} rows in all), one per study"
            + (f", and {controls} controls stud{'ies' if controls != 1 else 'y'} with comparisons of "
               f"{'their' if controls != 1 else 'its'} own (Bonferroni within each)" if controls else "")
            + f". Each family keeps its own chance of any false verdict at or below {alpha:g}; nothing bounds the "
              f"chance across families. Were every claim null, a reader scanning all {claims + controls} families "
              f"could expect up to {alpha * (claims + controls):.2g} false verdicts in total (the families' rates "
              f"add), so decided rows gathered from several studies carry no {alpha:g} guarantee as a set: judge a "
              "claim within its study, and a replication by the rows both studies judged.")
    return text


def render_index(reports_dir: Path, studies: list[tuple[str, str]]) -> None:
    """reports/index.md: every rendered study (name, description) with its one-line conclusion, data, seeds and
    the day its last run finished, from reports/<study>/summary.json (the description alone where that is absent)."""
    groups: dict[str, list[str]] = {key: [] for key in SECTIONS}  # real data first, then the probe's mechanism checks
    families = {"claims": 0, "rows": 0, "controls": 0}
    for name, desc in sorted(studies):
        path = Path(reports_dir) / name / SUMMARY_FILE
        entry = json.loads(path.read_text()) if path.exists() else {"description": desc}
        if entry.get("claims"):
            families["claims"] += 1
            families["rows"] += len(entry["claims"])
        families["controls"] += bool(entry.get("controls"))
        cells = [f"[{name}]({name}/index.md)", entry.get("description") or desc,
                 *(str(entry.get(k, "")) for k in ("conclusion", "data", "seeds", "date"))]
        groups[entry.get("section", "real")].append(
            "| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    head = ["| study | what it tests | conclusion (each study one Holm family) | data | seeds | date |",
            "|---|---|---|---|---|---|"]
    lines = ["# Reports", "", "Every shipped study: what it tests, what the harness concluded, on which data and "
             "seeds, and the day its last run finished. Each report opens with its conclusion in sentences.",
             "", families_text(**families)]
    for key, (title, what) in SECTIONS.items():
        if groups[key]:
            lines += ["", f"## {title}", "", what[0].upper() + what[1:] + ".", "", *head, *groups[key]]
    atomic_write_text(Path(reports_dir) / "index.md", "\n".join(lines) + "\n")
