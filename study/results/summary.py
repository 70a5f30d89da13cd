"""Per-variant summaries and protocol checks of a results table (the report only formats them).

Accuracies in percent. Intervals are t-intervals over seeds clipped to [0, 100]. mean_acc is the official
convention (mean over all classes, absent classes count 0); mean_acc_present the nan-mean over present classes.
Throughput columns are medians over the variant's rows: the bench/<variant>.json value when one exists.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from study.results.stats import summarize
from study.results.table import trained_mask

BOUNDS = (0.0, 100.0)
# compared rows must agree on these; a difference is a warning in the report
PROTOCOL_KEYS = ("device", "dtype", "bench_batch", "bench_size", "eval_mode", "effective_batch", "bn", "world_size",
                 "steps", "crop", "data", "memory_kind")
MEDIANS = ("train_img_s", "infer_img_s", "latency_ms_p50", "latency_ms_p95", "peak_mem_mb", "params_m", "gflops",
           "ppm_gflops", "train_seconds", "head_train_img_s")


def summarize_variants(df: pd.DataFrame) -> pd.DataFrame:
    """One row per variant over its completed seeds, in table order."""
    rows = []
    for variant, g in df.groupby("variant", sort=False):
        ok = g[g["status"] == "completed"]
        row = {"variant": variant, "runs": len(g)}
        for key, col in (("miou", "miou"), ("acc", "pixel_acc"), ("macc", "mean_acc"),
                         ("macc_present", "mean_acc_present")):
            values = 100 * ok[col] if col in ok else pd.Series(dtype=float)
            s = summarize(list(values), bounds=BOUNDS)
            row.update({f"{key}_mean": s["mean"], f"{key}_std": s["std"], f"{key}_ci_low": s["ci_low"],
                        f"{key}_ci_high": s["ci_high"]})
            if key == "miou":
                row["n"] = s["n"]
                row["miou_values"] = list(values)
                row["miou_seeds"] = [int(v) for v in ok["seed"]]
        for col in MEDIANS:
            row[col] = ok[col].median() if col in ok else float("nan")
        row["throughput_source"] = ", ".join(sorted(ok["throughput_source"].astype(str).unique())) \
            if "throughput_source" in ok and len(ok) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def protocol_warnings(df: pd.DataFrame) -> list[str]:
    """'rows differ in <key>: a, b' for each protocol field on which completed rows disagree."""
    done = df[df["status"] == "completed"]
    out = []
    for key in PROTOCOL_KEYS:
        if key in done and done[key].astype(str).nunique() > 1:
            out.append(f"rows differ in {key}: {', '.join(sorted(done[key].astype(str).unique()))}")
    return out


def memory_label(kinds: list[str]) -> str:
    """What the peak-memory column measures, named from the throughput's memory kind."""
    kinds = sorted({k for k in kinds if k})
    if not kinds:
        return "peak memory MB (kind not recorded)"
    if all("cuda" in k for k in kinds):
        return "CUDA allocator peak MB"
    if all("rss" in k.lower() for k in kinds):
        return "process peak RSS MB (includes the data cache)"
    return "peak memory MB (" + "; ".join(kinds) + ")"


def _one_or_many(done: pd.DataFrame, column: str) -> list[str]:
    return sorted(done[column].astype(str).unique()) if column in done else []


def absent_classes(records: list[Any]) -> dict[str, Any]:
    """Classes with no label pixel in the evaluation split (a row of zeros in the completed runs' confusion
    matrix): `absent` (how many), `absent_names` (those whose IoU a run left undefined: no pixel labelled or
    predicted), `classes` (K). Empty where the runs disagree on the split or record no matrix."""
    done = [r for r in records
            if r.status == "completed" and (getattr(r, "metrics", None) or {}).get("confusion_matrix")]
    counts = {sum(1 for row in r.metrics["confusion_matrix"] if not any(row)) for r in done}
    if len(counts) != 1 or not (absent := counts.pop()):
        return {}
    names = sorted({name for r in done for name, v in (r.metrics.get("per_class_iou") or {}).items()
                    if isinstance(v, float) and math.isnan(v)})
    return {"absent": absent, "absent_names": names, "classes": len(done[0].metrics["confusion_matrix"])}


def study_facts(df: pd.DataFrame, records: list[Any]) -> dict[str, Any]:
    """What ran, read from the table and the records' config and provenance (the report words it).

    Keys: runs, completed, failed, pruned, variants, seeds, data, train_size, val_size, crop, steps, batch, lr
    (lists of the distinct values over completed runs), device, hardware, cpus (the distinct CPU models the records
    name) with cpu_unrecorded (records naming none), precision (and precision_from: provenance
    or throughput, the dtype its measurement recorded), pretrained, weights, dates (first and last
    day a run finished), unjudged (variants with completed runs the training check did not judge), untrained
    ([(variant, seed)] of completed runs flagged as not trained; [] without the
    column), checked (whether the table has the `trained` column).
    """
    status = df["status"].astype(str)
    done = df[status == "completed"]
    basis = done if len(done) else df
    prov = next((r.provenance for r in records if r.status == "completed"), None) or \
        next((r.provenance for r in records), {})
    settings = prov.get("settings") or {}
    dtypes = sorted({str(v) for v in done["dtype"] if str(v) not in ("", "nan", "None")}) if "dtype" in done else []
    precision = settings.get("dtype") or prov.get("dtype") or ""
    source = "provenance" if precision else "throughput" if dtypes else ""
    precision = precision or ", ".join(dtypes)
    pretrained = sorted({str((r.config.get("model") or {}).get("pretrained") or "") for r in records})
    weights = sorted({str(r.provenance.get("weights", "")) for r in records} - {""})
    caches = sorted({f"{fc.get('train_key')} ({r.config['data']['train_split']}), {fc.get('val_key')} "
                     f"({r.config['data']['val_split']})" for r in records if (fc := r.provenance.get("feature_cache"))})
    days = sorted({r.finished_at[:10] for r in records if r.finished_at})
    flags = trained_mask(done)
    roots = sorted({Path(str(r.config["data"].get("root") or "")).name for r in records
                    if (r.config.get("data") or {}).get("name") == "folder"} - {""})
    return {
        "runs": len(df), "completed": len(done), "failed": int((status == "failed").sum()),
        "pruned": int((status == "pruned").sum()), "variants": int(df["variant"].nunique()),
        "seeds": sorted(int(s) for s in df["seed"].unique()),
        **{key: _one_or_many(basis, key) for key in ("data", "crop", "steps", "batch", "lr")},
        "train_size": prov.get("train_size"), "val_size": prov.get("val_size"),
        "device": str(prov.get("device", "")), "hardware": str(settings.get("hardware") or ""),
        "cpus": sorted({str(r.provenance.get("cpu")) for r in records if r.provenance.get("cpu")}),
        "cpu_unrecorded": sum(not r.provenance.get("cpu") for r in records),
        "precision": str(precision), "precision_from": source, "pretrained": pretrained != [""], "weights": weights,
        "feature_caches": caches, "folder_roots": roots, **absent_classes(records),
        "dates": (days[0], days[-1]) if days else None,
        "untrained": [(str(v), int(s)) for v, s, ok in zip(done["variant"], done["seed"], flags, strict=True)
                      if not ok],
        "checked": "trained" in df,
        "unjudged": sorted({str(v) for v, t in zip(done["variant"], done["trained"], strict=True) if t is None
                            or (not isinstance(t, bool) and pd.isna(t))}) if "trained" in done else [],
    }
