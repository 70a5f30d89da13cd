"""Run records -> the tidy results table (one row per run), stored as runs.parquet and runs.csv.

No torch here: tables and reports are built on machines that only have the copied results/ folder. When
bench/<variant>.json files exist (throughput measured once per variant, alone on the machine), a variant's
throughput columns come from them and `throughput_source` says so; otherwise from each run's record. The axis
columns come from study.results.axes; `recipe` hashes every other hashed config key (claims pair only variants
that share it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from study.atomic import atomic_write_bytes
from study.manifest import ManifestError, StudyManifest, read_manifest
from study.record import RECORD_FILE, RunRecord, read_record
from study.results.axes import RECIPE_COLUMN, axes_of, recipe_hash

METRICS = ("miou", "miou_present", "pixel_acc", "mean_acc", "mean_acc_present")
THROUGHPUT = ("train_img_s", "infer_img_s", "latency_ms_p50", "latency_ms_p95", "peak_mem_mb", "params_m", "gflops",
              "ppm_gflops", "mfu")
PROTOCOL = ("device", "dtype", "bench_batch", "bench_size", "eval_mode", "effective_batch", "bn", "world_size")
TABLE_FILE = "runs.parquet"
BENCH_DIR = "bench"  # bench/<variant>.json: {"variant", "throughput"} measured once per variant, alone


class ResultsError(ValueError):
    """A results folder cannot be tabulated; the message names the folder or file."""


def load_manifest(study_dir: Path) -> StudyManifest:
    """results/<study>/study.json (written by the runner); a bare one named after the folder when absent."""
    try:
        return read_manifest(study_dir) or StudyManifest(name=Path(study_dir).name)
    except ManifestError as e:
        raise ResultsError(str(e)) from None


def load_bench(study_dir: Path) -> dict[str, dict[str, Any]]:
    """{variant: throughput} from bench/<variant>.json (one measurement per variant, alone on the machine)."""
    out = {}
    for path in sorted((Path(study_dir) / BENCH_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            variant, throughput = data["variant"], data["throughput"]
            if not isinstance(variant, str) or not isinstance(throughput, dict):
                raise TypeError("variant must be a string and throughput a mapping")
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ResultsError(f"{path}: unreadable bench file ({e})") from None
        out[variant] = throughput
    return out


def load_records(study_dir: Path) -> list[RunRecord]:
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ResultsError(f"{study_dir}: results folder not found")
    paths = sorted((study_dir / "runs").glob(f"*/{RECORD_FILE}"))
    if not paths:
        raise ResultsError(f"{study_dir}: no run records under runs/*/{RECORD_FILE}")
    records = []
    for path in paths:
        try:
            records.append(read_record(path))
        except ValueError as e:
            raise ResultsError(str(e)) from None
    return records


RULE_KEY = "train.trained_loss_ratio"


def study_rule(manifest: StudyManifest, variant: str) -> float | None:
    """The training check's bound the study file sets for a variant (its variant entry, then its overrides), or
    None when the study leaves each run's own."""
    for source in ((manifest.variants or {}).get(variant) or {}, manifest.overrides or {}):
        if isinstance(source, dict) and source.get(RULE_KEY) is not None:
            return float(source[RULE_KEY])
    return None


def judged(record: RunRecord, rule: float | None) -> bool | None:
    """Whether the run trained: the run's own judgement, or the study's rule applied to the numbers the run
    stored (final / first loss); a rule of 0 judges nothing. The check is not part of the config hash, so a study
    that changes it re-judges its runs without training them again."""
    ratio = (record.training_check or {}).get("ratio")
    if rule is None or record.trained is None or not isinstance(ratio, (int, float)):
        return record.trained
    return None if rule == 0 else bool(ratio <= rule)


def row_of(record: RunRecord, bench: dict[str, Any] | None = None, rule: float | None = None) -> dict[str, Any]:
    """One table row; `bench` (the variant's bench/<variant>.json throughput) replaces the run's own; `rule`
    (study_rule) re-judges whether the run trained."""
    th, cost, prov = bench if bench is not None else record.throughput, record.cost, record.provenance
    row: dict[str, Any] = {"study": record.study, "variant": record.variant, "seed": record.seed}
    row.update(axes_of(record.config))
    row[RECIPE_COLUMN] = recipe_hash(record.config)
    row["status"] = record.status
    row["trained"] = judged(record, rule)  # True / False, or None when not judged (failed, pruned, old records)
    for key in METRICS:
        value = record.metrics.get(key)
        row[key] = float(value) if isinstance(value, (int, float)) else float("nan")
    for key in THROUGHPUT:
        value = th.get(key)
        row[key] = float(value) if isinstance(value, (int, float)) else float("nan")
    if "head_train_img_s" in record.throughput:  # frozen features: the pyramid and head alone, on stored maps
        row["head_train_img_s"] = float(record.throughput["head_train_img_s"])
    row["train_seconds"] = float(cost.get("train_seconds", float("nan")))
    row["eval_seconds"] = float(cost.get("eval_seconds", float("nan")))
    row["device"] = str(prov.get("device", ""))
    row["dtype"] = str(th.get("dtype", ""))
    row["bench_batch"] = th.get("batch_size", float("nan"))
    row["bench_size"] = "x".join(str(v) for v in th.get("image_size", [])) or ""
    row["memory_kind"] = str(th.get("memory_kind") or "")
    row["throughput_source"] = f"{BENCH_DIR}/{record.variant}.json" if bench is not None else "run"
    row["eval_mode"] = str(prov.get("eval_mode", record.config["eval"]["mode"]))
    row["effective_batch"] = prov.get("batch_size", record.config["train"]["batch_size"])
    row["bn"] = str(prov.get("bn", ""))
    row["world_size"] = prov.get("world_size", 1)
    row["config_hash"] = record.config_hash
    row["git_sha"] = str(prov.get("git_sha", ""))
    row["error"] = record.error
    for name, value in (record.metrics.get("per_class_iou") or {}).items():
        row[f"iou/{name}"] = float(value) if isinstance(value, (int, float)) else float("nan")
    return row


def trained_mask(df: pd.DataFrame) -> pd.Series:
    """The `trained` column as booleans: False only where a run was judged not to have trained; a table without
    the column, or a run the check did not judge, counts as trained."""
    if "trained" not in df:
        return pd.Series(True, index=df.index, dtype=bool)
    return df["trained"].astype(object).map(_trained_value).astype(bool)


def _trained_value(v: Any) -> bool:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return True
    return not (v is False or v == 0 or str(v).lower() == "false")


def build_table(study_dir: str | Path) -> pd.DataFrame:
    """Every run record of the study folder as one tidy row; variants in the study's order, then seeds."""
    study_dir = Path(study_dir)
    manifest = load_manifest(study_dir)
    records = load_records(study_dir)
    bench = load_bench(study_dir)
    df = pd.DataFrame([row_of(r, bench.get(r.variant), study_rule(manifest, r.variant)) for r in records])
    order = manifest.order
    order += sorted(v for v in df["variant"].unique() if v not in order)
    df["_order"] = df["variant"].map({v: i for i, v in enumerate(order)})
    df = df.sort_values(["_order", "seed"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return df


def _table_bytes(df: pd.DataFrame) -> dict[str, bytes]:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return {TABLE_FILE: buffer.getvalue(), "runs.csv": df.to_csv(index=False).encode()}


def write_table(study_dir: str | Path) -> pd.DataFrame:
    """Build the table from the records and write runs.parquet and runs.csv next to the runs (atomically); a file
    that already holds the same bytes is left alone, so re-running a finished study changes nothing on disk."""
    study_dir = Path(study_dir)
    df = build_table(study_dir)
    for name, data in _table_bytes(df).items():
        path = study_dir / name
        if not (path.is_file() and path.read_bytes() == data):
            atomic_write_bytes(path, data)
    return df


def read_table(study_dir: str | Path) -> pd.DataFrame:
    """The study's table, built from its records every time (cheap; never decided by file times, so a code change
    that adds a column or changes a rule shows at once). runs.parquet and runs.csv are refreshed where the folder
    is writable; a read-only copy of the results gives the same table, unwritten."""
    try:
        return write_table(study_dir)
    except OSError:
        return build_table(study_dir)
