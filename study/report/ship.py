"""Shipped reports: a study's small inputs copied into reports/_inputs/<study>/, so the rendered report in git can
be re-rendered byte for byte on a fresh clone (`python -m study.report`), without training and without results/.

What travels: study.json, runs.parquet and runs.csv, every run's record.json, bench/*.json, a search's trials.csv
and importances.json, and the qualitative PNGs that the rendered report shows (render first, then ship). Never model weights, checkpoints or the Optuna storage. The inputs
live outside results/, so a fresh clone's `nox -s ablation` still runs every cell.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from study.atomic import atomic_write_bytes
from study.results.table import ResultsError, load_manifest

SHIPPED = "_inputs"  # reports/_inputs/<study>/ (study names never start with "_")
PATTERNS = ("study.json", "runs.parquet", "runs.csv", "trials.csv", "importances.json", "bench/*.json",
            "runs/*/record.json")


def shipped_dir(reports_dir: Path, name: str) -> Path:
    return Path(reports_dir) / SHIPPED / name


def ship_inputs(study_dir: Path, reports_dir: Path) -> Path:
    """Copy the inputs of results/<study> into reports/_inputs/<study>/ (replacing an older copy); returns it."""
    study_dir = Path(study_dir)
    if not (study_dir / "runs").is_dir():
        raise ResultsError(f"{study_dir}: no runs/ folder to ship")
    dest = shipped_dir(reports_dir, load_manifest(study_dir).name)
    staging = dest.with_name(f".{dest.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    shown = Path(reports_dir) / dest.name / "qualitative"  # <run id>_<file> for each strip the report shows
    pngs = [p for p in sorted(study_dir.glob("runs/*/qualitative/*.png"))
            if (shown / f"{p.parent.parent.name}_{p.name}").exists()]
    for src in [p for pattern in PATTERNS for p in sorted(study_dir.glob(pattern))] + pngs:
        atomic_write_bytes(staging / src.relative_to(study_dir), src.read_bytes())
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def shipped_studies(reports_dir: Path) -> list[Path]:
    """The shipped input folders under reports/_inputs/."""
    root = Path(reports_dir) / SHIPPED
    return sorted(d for d in root.iterdir() if (d / "runs").is_dir()) if root.is_dir() else []
