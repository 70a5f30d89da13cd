"""Throughput is a property of a variant, not of a seed: after a sweep, time each variant once, alone.

Cells of a `throughput: per_variant` grid skip the benchmark (timed next to other workers, a variant can show
half its speed). Once every worker is done, each variant with a completed cell is benchmarked in a fresh process
with every core, one after another, into results/<study>/bench/<variant>.json, which the results table reads.
A file whose config hash matches is kept, so re-running a finished study times nothing again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from study.atomic import atomic_write_text
from study.config import config_hash
from study.record import RECORD_FILE, read_record, run_dir
from study.search.space import StudySpec, variant_bench_config

BENCH_DIR = "bench"


def _completed(out_dir: str, spec: StudySpec, variant: str) -> bool:
    for seed in spec.seeds:
        path = run_dir(out_dir, spec.name, variant, seed) / RECORD_FILE
        try:
            if path.exists() and read_record(path).status == "completed":
                return True
        except ValueError:
            continue
    return False


def _current(path: Path, chash: str) -> bool:
    try:
        return json.loads(path.read_text()).get("config_hash") == chash
    except (OSError, ValueError):
        return False


def take_bench(spec: StudySpec, source: Path, out_dir: str, cli: tuple[str, ...]) -> list[str]:
    """Copy source/bench/<variant>.json into results/<study>/bench/ for every variant whose file there has the
    config hash it would be timed under now (a study resumed from shipped records keeps their timings); returns the
    variants taken."""
    taken = []
    for variant in spec.variants:
        cfg = variant_bench_config(spec, variant, out_dir, cli)
        src = Path(source) / BENCH_DIR / f"{variant}.json"
        if cfg is None or not _current(src, config_hash(cfg)):
            continue
        atomic_write_text(Path(out_dir) / spec.name / BENCH_DIR / f"{variant}.json", src.read_text())
        taken.append(variant)
    return taken


def bench_variants(spec: StudySpec, out_dir: str, cli: tuple[str, ...],
                   log: Callable[[str], None] = print) -> list[str]:
    """Benchmark every variant that completed and has no current bench file; returns the problems met."""
    if spec.throughput != "per_variant":
        return []
    folder = Path(out_dir) / spec.name / BENCH_DIR
    problems = []
    for variant in spec.variants:
        cfg = variant_bench_config(spec, variant, out_dir, cli)
        if cfg is None or not _completed(out_dir, spec, variant):
            continue
        chash = config_hash(cfg)
        out = folder / f"{variant}.json"
        if _current(out, chash):
            continue
        config_file = folder / f"{variant}.yaml"
        atomic_write_text(config_file, yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        done = subprocess.run([sys.executable, "-m", "study", "bench", str(config_file), "--out", str(out)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            problems.append(f"{variant}: benchmark failed ({tail})")
            continue
        t = json.loads(out.read_text())["throughput"]
        log(f"[{spec.name}] {variant}: train {t['train_img_s']:.1f} img/s, inference {t['infer_img_s']:.1f} img/s "
            f"({t['dtype']}, {t['device']}, alone)")
    return problems
