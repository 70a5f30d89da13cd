"""`python -m study.report [results/<study> ...]`: render reports from stored results (no torch needed).

Reports of your runs go to results/reports/<study>/ (git-ignored): a study you run never rewrites the reports
shipped in git. Without arguments: every study under results/, and every shipped report (reports/_inputs/<study>/)
whose study is not under results/. `--ship` renders into reports/ and copies each study's inputs into
reports/_inputs/ for git: the one way tracked reports change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.report.render import render_index, render_study
from study.report.ship import ship_inputs, shipped_dir, shipped_studies
from study.results.table import ResultsError, load_manifest

LOCAL_REPORTS = "results/reports"  # git-ignored, like every other output of a run


def _study_name(study_file: Path) -> str:
    import yaml

    if not study_file.is_file():
        raise ResultsError(f"{study_file}: study file not found")
    data = yaml.safe_load(study_file.read_text()) or {}
    return str(data.get("name", study_file.stem))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.report", description=__doc__)
    p.add_argument("studies", nargs="*", help="results/<study> folders (default: every study under --results)")
    p.add_argument("--results", default="results", help="results folder (default results)")
    p.add_argument("--out", help=f"reports folder (default {LOCAL_REPORTS}; with --ship, the --shipped folder)")
    p.add_argument("--shipped", default="reports",
                   help="the shipped reports, with their inputs in <shipped>/_inputs/ (default reports)")
    p.add_argument("--study-file", help="render the study that this study file describes")
    p.add_argument("--ship", action="store_true",
                   help="render into the --shipped folder and copy each study's inputs (records, tables, no weights) "
                        "into <shipped>/_inputs/ for git")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.ship and args.out and Path(args.out) != Path(args.shipped):
        print("error: --ship renders into the --shipped folder; drop --out", file=sys.stderr)
        return 2
    args.out = args.shipped if args.ship else (args.out or LOCAL_REPORTS)
    try:
        if args.study_file:
            folders = [Path(args.results) / _study_name(Path(args.study_file))]
        elif args.studies:
            folders = [Path(s) for s in args.studies]
        else:
            root = Path(args.results)
            folders = sorted(d for d in root.iterdir() if d.is_dir() and (d / "runs").is_dir()) \
                if root.is_dir() else []
            names = {d.name for d in folders}
            folders += [d for d in shipped_studies(Path(args.shipped)) if d.name not in names]
            if not folders:
                found = "no study folders with runs/ inside" if root.is_dir() else "results folder not found"
                raise ResultsError(f"{root}: {found} (run a study first: nox -s ablation)")
        for folder in folders:
            if args.ship:  # render, ship what the report uses, render again from the shipped inputs
                render_study(folder, Path(args.out))
                folder = ship_inputs(folder, Path(args.out))
            out = render_study(folder, Path(args.out))
            print(f"{folder} -> {out / 'index.md'}, {out / 'index.html'}")
        rendered = []
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for d in sorted(Path(args.out).iterdir()):
            if (d / "index.md").exists() and not d.name.startswith("."):
                folder = Path(args.results) / d.name
                folder = folder if folder.is_dir() else shipped_dir(Path(args.shipped), d.name)
                rendered.append((d.name, load_manifest(folder).description if folder.is_dir() else ""))
        render_index(Path(args.out), rendered)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
