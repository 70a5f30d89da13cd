"""Per-variant summaries and protocol checks of a results table (the report only formats them).

Accuracies in percent. Intervals are t-intervals over seeds clipped to [0, 100]. mean_acc is the official
convention (mean over all classes, absent classes count 0); mean_acc_present the nan-mean over present classes.
Throughput columns are medians over the variant's rows: the bench/<variant>.json value when one exists.
"""

from __future__ import annotations

import pandas as pd

from study.results.stats import summarize

BOUNDS = (0.0, 100.0)
# compared rows must agree on these; a difference is a warning in the report
PROTOCOL_KEYS = ("device", "dtype", "bench_batch", "bench_size", "eval_mode", "effective_batch", "bn", "world_size",
                 "steps", "crop", "data", "memory_kind")
MEDIANS = ("train_img_s", "infer_img_s", "latency_ms_p50", "latency_ms_p95", "peak_mem_mb", "params_m", "gflops",
           "ppm_gflops", "train_seconds")


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
