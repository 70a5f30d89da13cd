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
SIBLING_KEY = "train.trained_sibling_ratio"
SIBLING_DEFAULT = 1.5  # records written before the sibling bound existed


def study_rule(manifest: StudyManifest, variant: str, key: str = RULE_KEY) -> float | None:
    """A training check bound (`key`) the study file sets for a variant (its variant entry, then its overrides), or
    None when the study leaves each run's own."""
    for source in ((manifest.variants or {}).get(variant) or {}, manifest.overrides or {}):
        if isinstance(source, dict) and source.get(key) is not None:
            return float(source[key])
    return None


def _final_loss(record: RunRecord) -> float | None:
    value = (record.training_check or {}).get("final_loss")
    return float(value) if isinstance(value, (int, float)) else None


def judged(record: RunRecord, rule: float | None, best_sibling: float | None = None,
           sibling_ratio: float | None = None) -> bool | None:
    """Whether the run trained. It did not when its final loss is above `rule` x its first step's loss (the run's
    own bound when `rule` is None; 0 judges nothing) and, where its variant has other completed runs in the study,
    also above `sibling_ratio` x the lowest final loss among them (`best_sibling`): a loss that stays high on every
    seed is a floor of the task (a cue the model cannot see), one seed stuck far above a sibling that got down is a
    stall. A run alone is judged by the first part. The check is not part of the config hash, so a study that
    changes it re-judges its runs from the numbers they stored, without training them again."""
    ratio = (record.training_check or {}).get("ratio")
    if record.trained is None or not isinstance(ratio, (int, float)):
        return record.trained
    if rule == 0:
        return None
    if (record.trained if rule is None else ratio <= rule):
        return True
    final = _final_loss(record)
    if best_sibling is None or final is None:
        return False
    bound = sibling_ratio if sibling_ratio is not None else \
        float(record.config.get("train", {}).get("trained_sibling_ratio", SIBLING_DEFAULT))
    return final <= bound * best_sibling


def best_siblings(records: list[RunRecord]) -> dict[str, float | None]:
    """Per record id: the lowest final loss among the other completed runs of its variant (None: it has none)."""
    finals: dict[str, list[tuple[str, float]]] = {}
    for r in records:
        final = _final_loss(r)
        if r.status == "completed" and final is not None:
            finals.setdefault(r.variant, []).append((r.id, final))
    return {r.id: min((f for i, f in finals.get(r.variant, []) if i != r.id), default=None) for r in records}


def row_of(record: RunRecord, bench: dict[str, Any] | None = None, rule: float | None = None,
           best_sibling: float | None = None, sibling_ratio: float | None = None) -> dict[str, Any]:
    """One table row; `bench` (the variant's bench/<variant>.json throughput) replaces the run's own; `rule`,
    `best_sibling` and `sibling_ratio` judge whether the run trained (`judged`)."""
    th, cost, prov = bench if bench is not None else record.throughput, record.cost, record.provenance
    row: dict[str, Any] = {"study": record.study, "variant": record.variant, "seed": record.seed}
    row.update(axes_of(record.config))
    row[RECIPE_COLUMN] = recipe_hash(record.config)
    row["status"] = record.status
    row["trained"] = judged(record, rule, best_sibling, sibling_ratio)  # True / False, or None when not judged (failed, pruned, old records)
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
    best = best_siblings(records)
    df = pd.DataFrame([row_of(r, bench.get(r.variant), study_rule(manifest, r.variant), best[r.id],
                              study_rule(manifest, r.variant, SIBLING_KEY)) for r in records])
    order = manifest.order
    order += sorted(v for v in df["variant"].unique() if v not in order)
    df["_order"] = df["variant"].map({v: i for i, v in enumerate(order)})
    df = df.sort_values(["_order", "seed"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return df


def _table_bytes(df: pd.DataFrame) -> dict[str, bytes]:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return {TABLE_FILE: buffer.getvalue(), "runs.csv": df.to_csv(index=False).encode()}


def _holds(path: Path, data: bytes) -> bool:
    """Whether `path` already holds `data`: the same bytes, or for a parquet file the same table (columns, types
    and values), whatever pandas or pyarrow version stamped the file it is in."""
    if not path.is_file():
        return False
    old = path.read_bytes()
    if old == data:
        return True
    if path.suffix != ".parquet":
        return False
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(old)).equals(pq.read_table(io.BytesIO(data)))  # schema metadata aside
    except Exception:  # noqa: BLE001 - an unreadable file is rewritten
        return False


def write_table(study_dir: str | Path) -> pd.DataFrame:
    """Build the table from the records and write runs.parquet and runs.csv next to the runs (atomically); a file
    that already holds the same table is left alone, so re-running a finished study, or re-rendering shipped
    inputs under another pandas, changes nothing on disk."""
    study_dir = Path(study_dir)
    df = build_table(study_dir)
    for name, data in _table_bytes(df).items():
        path = study_dir / name
        if not _holds(path, data):
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
