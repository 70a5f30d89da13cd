"""Fabricated study results in the exact contract the runner writes (records + study.json), for report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from study.config_files import load_config
from study.manifest import StudyManifest, write_manifest
from study.record import RunRecord, pack_counts, run_dir, write_record
from study.results.axes import RECIPE_COLUMN, axes_of, recipe_hash
from study.results.claims import CLAIMS, find_pairs

TABLE1 = {
    "FCN": {"model.ppm": False},
    "B1-MAX": {"model.bins": [1], "model.pool": "max", "model.reduction": False},
    "B1-AVE": {"model.bins": [1], "model.pool": "avg", "model.reduction": False},
    "B1236-MAX": {"model.bins": [1, 2, 3, 6], "model.pool": "max", "model.reduction": False},
    "B1236-AVE": {"model.bins": [1, 2, 3, 6], "model.pool": "avg", "model.reduction": False},
    "B1236-MAX-DR": {"model.bins": [1, 2, 3, 6], "model.pool": "max", "model.reduction": True},
    "B1236-AVE-DR": {"model.bins": [1, 2, 3, 6], "model.pool": "avg", "model.reduction": True},
}


def fabricate(root: Path, miou: dict[str, list[float]], variants: dict[str, dict] = TABLE1, name: str = "table1",
              paper_table: str | None = "table1", baseline: str | None = "FCN", failed: dict[str, str] | None = None,
              description: str = "fabricated", per_image: dict[tuple[str, int], tuple] | None = None,
              controls: list[dict] | None = None, aa: dict | None = None, confirms: str | None = None) -> Path:
    """results/<name>/ with one completed record per (variant, seed) value in `miou` (fractions).

    controls: the comparisons of a controls study (its manifest lists them; None: a grid); aa: its A/A pair;
    confirms: the study this one re-runs.
    per_image: {(variant, seed): (intersection, union)} count matrices (images x classes) to store packed.
    """
    study_dir = root / name
    order = [v for v in variants if v in miou or v in (failed or {})]
    for variant in order:
        overrides = [f"{k}={json.dumps(v)}" for k, v in variants[variant].items()]
        for seed, value in enumerate(miou.get(variant, [None])):
            cfg = load_config(None, [*overrides, f"run.study={name}", f"run.variant={variant}", f"run.seed={seed}"])
            folder = run_dir(root, name, variant, seed)
            status = "failed" if value is None else "completed"
            metrics = {} if value is None else {
                "miou": value, "miou_present": value, "pixel_acc": 0.5 + value / 2, "mean_acc": value,
                "mean_acc_present": value + 0.02,
                "per_class_iou": {"road": value, "water": value - 0.05, "car": value + 0.05, "boat": value}}
            if value is not None and (variant, seed) in (per_image or {}):
                inter, union = per_image[(variant, seed)]
                metrics["per_image"] = {"intersection": pack_counts(inter), "union": pack_counts(union)}
            qual = []
            if value is not None:
                strip = np.zeros((8, 24, 3), np.uint8)
                strip[:, :8] = 200
                (folder / "qualitative").mkdir(parents=True, exist_ok=True)
                Image.fromarray(strip).save(folder / "qualitative" / "000.png")
                qual = ["qualitative/000.png"]
            record = RunRecord(
                id=f"{variant}__s{seed}", study=name, variant=variant, seed=seed, config=cfg.to_dict(),
                config_hash="h" + variant, status=status, error=(failed or {}).get(variant, ""), metrics=metrics,
                curves=[{"step": 10, "epoch": 0.5, "loss": 1.0, "lr": 0.01},
                        {"step": 20, "epoch": 1.0, "loss": 0.5, "lr": 0.001},
                        {"step": 20, "epoch": 1.0, "val_miou": value or 0.0}],
                throughput={"train_img_s": 100.0, "infer_img_s": 300.0 - 10 * len(variant), "latency_ms_p50": 5.0,
                            "latency_ms_p95": 6.0, "peak_mem_mb": 900.0, "params_m": 0.05, "gflops": 0.09,
                            "ppm_gflops": 0.001, "mfu": None, "batch_size": 8, "image_size": [128, 128],
                            "dtype": "float32", "channels_last": True, "compile": False, "device": "cpu",
                            "protocol": "fabricated", "memory_kind": "process peak RSS (ru_maxrss)"},
                cost={"train_seconds": 20.0, "eval_seconds": 1.0},
                provenance={"git_sha": "abc123", "torch": "2.x", "timm": "1.x", "python": "3.11", "device": "cpu",
                            "world_size": 1, "eval_mode": "whole", "batch_size": 8, "bn": "BatchNorm"},
                artifacts={"qualitative": qual}, started_at="2026-01-01T00:00:00+00:00",
                finished_at="2026-01-01T00:01:00+00:00")
            write_record(record, folder)
    write_manifest(study_dir, StudyManifest(
        name=name, description=description, study_file=f"configs/studies/{name}.yaml",
        base_config="configs/probe.yaml", command=f"python -m study sweep configs/studies/{name}.yaml", kind="grid",
        baseline=baseline, paper_table=paper_table, seeds=(0, 1, 2), variants=variants,
        variant_order=tuple(variants), controls=controls, aa=aa, equivalence_margin=0.5 if aa else None,
        confirms=confirms))
    return study_dir


def claim_pairs(variants: dict[str, dict] = TABLE1) -> list[tuple[int, int]]:
    """(better, worse) indices into `variants` of every claim row a study of them gets, in the report's order."""
    configs = {v: load_config(None, [f"{k}={json.dumps(x)}" for k, x in o.items()]).to_dict()
               for v, o in variants.items()}
    df = pd.DataFrame([{"variant": v, **axes_of(c), RECIPE_COLUMN: recipe_hash(c)} for v, c in configs.items()])
    names = list(variants)
    return [(names.index(b), names.index(w)) for claim in CLAIMS for b, w in find_pairs(df, claim)]
