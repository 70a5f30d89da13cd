"""`python -m study run|evaluate|bench|sweep ...`: the pieces of a study, one at a time."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

USAGE = """usage: python -m study COMMAND ...

commands:
  run CONFIG [section.key=value ...]          train, evaluate and benchmark one run; writes its run record to
                                              results/<run.study>/runs/<run.variant, else the config hash>__s<seed>/
  evaluate --checkpoint PATH [--data-root DIR] [--split SPLIT] [--out FILE] [section.key=value ...]
                                              evaluate a trained model (model.pt) on any split
  bench CONFIG [section.key=value ...]        throughput only (no training); prints a table, writes JSON
  plan STUDY.yaml [--noise-from DIR] [--seeds N]
                                              before running: what each claim row can detect at the planned
                                              seeds (noise from the earlier study the file names), seeds m needs
  sweep STUDY.yaml [--workers N] [--gpus IDS] [--workers-per-gpu K] [--gpus-per-cell G] [--dry-run]
        [--storage URL] [--executor slurm ...] [section.key=value ...]
                                              run a grid or Optuna study (see README; --help for all flags)
"""


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_run(argv: list[str]) -> int:
    from study.config import RunConfig, config_hash
    from study.config_files import load_config
    from study.record import run_dir
    from study.run import run_one

    p = argparse.ArgumentParser(prog="python -m study run")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if cfg.run.variant == RunConfig.variant:  # unnamed: one folder per config, so two configs never share one
        cfg = cfg.replace(run=dataclasses.replace(cfg.run, variant=config_hash(cfg)))
    record = run_one(cfg)
    print(json.dumps({"id": record.id, "folder": str(run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant,
                                                              cfg.run.seed)),
                      "status": record.status, "error": record.error,
                      **{k: record.metrics.get(k) for k in ("miou", "miou_present", "pixel_acc", "mean_acc")}}))
    return 0 if record.status == "completed" else 1


def cmd_evaluate(argv: list[str]) -> int:
    from study.run import evaluate_model_file

    p = argparse.ArgumentParser(prog="python -m study evaluate")
    p.add_argument("--checkpoint", required=True, help="model.pt written by a run")
    p.add_argument("--data-root", help="data set folder (default: the run's data.root)")
    p.add_argument("--split", help="split to evaluate (default: the run's data.val_split)")
    p.add_argument("--out", help="JSON file for the metrics (default: next to the checkpoint)")
    p.add_argument("overrides", nargs="*", help="e.g. eval.mode=slide")
    args = p.parse_args(argv)
    result, out = evaluate_model_file(Path(args.checkpoint), data_root=args.data_root, split=args.split,
                                      overrides=args.overrides, out=Path(args.out) if args.out else None)
    print(f"{result['data']} {result['split']} ({result['images']} images, {result['eval_mode']}): "
          f"mIoU {100 * result['miou']:.2f}  mIoU(present) {100 * result['miou_present']:.2f}  "
          f"pixel acc {100 * result['pixel_acc']:.2f}  mean acc {100 * result['mean_acc']:.2f}  -> {out}")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from tabulate import tabulate

    from study.atomic import atomic_write_text
    from study.config import config_hash
    from study.config_files import load_config
    from study.run import bench_config

    p = argparse.ArgumentParser(prog="python -m study bench")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", help="JSON file (default results/bench/<variant>.json)")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    result = bench_config(cfg)
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in result.items()]
    print(tabulate(rows, headers=["measure", "value"]))
    out = Path(args.out) if args.out else Path(cfg.run.out_dir) / "bench" / f"{cfg.run.variant}.json"
    atomic_write_text(out, json.dumps({"variant": cfg.run.variant, "config_hash": config_hash(cfg),
                                       "config": cfg.to_dict(), "throughput": result}, indent=2) + "\n")
    print(f"-> {out}")
    return 0


def cmd_plan(argv: list[str]) -> int:
    """What a study can detect before it runs: each claim row's detectable Δ at the planned seeds, from the noise of
    the earlier study the study file names (`noise_from`) or --noise-from, and the seeds m would need."""
    from study.results.claims import judge_claims
    from study.results.plan import plan_lines, plan_rows
    from study.results.table import ResultsError, read_table
    from study.search.space import cell_config, load_study

    p = argparse.ArgumentParser(prog="python -m study plan", description=cmd_plan.__doc__)
    p.add_argument("study_file")
    p.add_argument("--noise-from", help="an earlier study's folder (default: the study file's noise_from, looked up "
                                        "under --results, then under reports/_inputs)")
    p.add_argument("--results", default="results")
    p.add_argument("--seeds", type=int, help="plan for this many seeds (default: the study file's)")
    args = p.parse_args(argv)
    spec = load_study(args.study_file)
    configs = {v: cell_config(spec, v, spec.seeds[0]).to_dict() for v in spec.variants}
    folder = Path(args.noise_from) if args.noise_from else None
    if folder is None and spec.noise_from:
        folder = next((f for f in (Path(args.results) / spec.noise_from, Path("reports/_inputs") / spec.noise_from)
                       if (f / "runs.parquet").is_file() or (f / "runs").is_dir()), None)
        if folder is None:
            return _fail(f"{args.study_file}: noise_from: no results of study {spec.noise_from!r} under "
                         f"{args.results}/ or reports/_inputs/")
    if folder is None:
        return _fail(f"{args.study_file}: no noise estimate: set noise_from in the study file (an earlier study on "
                     f"the same data and recipe) or pass --noise-from FOLDER")
    try:
        earlier = judge_claims(read_table(folder))
    except ResultsError as e:
        return _fail(str(e))
    seeds = args.seeds or (spec.on_demand.max_seeds if spec.on_demand else len(spec.seeds))
    rows = plan_rows(configs, seeds, earlier, spec.equivalence_margin)
    print("\n".join(plan_lines(spec.name, rows, seeds, spec.equivalence_margin, str(folder))))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "sweep":
        from study.search.runner import main as sweep_main

        return sweep_main(rest)
    commands = {"run": cmd_run, "evaluate": cmd_evaluate, "bench": cmd_bench, "plan": cmd_plan}
    if command not in commands:
        return _fail(f"unknown command {command!r}\n{USAGE}")
    from study.config import ConfigError
    from study.data.common import DatasetError

    try:
        return commands[command](rest)
    except (ConfigError, DatasetError, FileNotFoundError, ValueError) as e:
        return _fail(str(e).splitlines()[0])
    except OSError as e:  # a full or unwritable disk: one line, nothing half-written is used
        from study.atomic import disk_error, disk_error_line

        if not disk_error(e):
            raise
        return _fail(disk_error_line(e))


if __name__ == "__main__":
    sys.exit(main())
