"""A cell over several processes: the worker that claimed it runs it as a torchrun (DDP) job and reads its record.

The worker keeps the claim, the heartbeat, retries and the Optuna report exactly as for a one-process cell
(worker.run_trial); only run_fn differs: the resolved cell config is written as YAML into the cell's folder and
`python -m torch.distributed.run --standalone --nproc_per_node G -m study.search.cell_job <cell.yaml>` trains it
(run_one on every rank). Rank 0 writes record.json, which is read back and returned. Resume works as for any cell:
the ranks find the cell's checkpoint.

Pruning crosses the process boundary through files in the cell's `prune/` folder: at each evaluation rank 0
writes `<step>.json` (the scalar metrics) and waits for `<step>.decision` ("prune" or "go"), which a thread of the
worker writes after asking Optuna (on_eval: trial.report + should_prune); the decision is broadcast to every
rank. Without an answer within PRUNE_WAIT_S the job goes on.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from study.atomic import atomic_write_text
from study.config import Config, config_hash
from study.parent_death import ending_with_this_process
from study.record import RECORD_FILE, RunRecord, completed_record, read_record, run_dir

CELL_CONFIG = "cell.yaml"
JOB_LOG = "torchrun.log"
PRUNE_DIR = "prune"
PRUNE_ENV = "STUDY_PRUNE_DIR"  # set by the worker when it wants to be asked at each evaluation
PRUNE_WAIT_S = 120.0


def torchrun_command(nproc: int, cell_yaml: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "study.search.cell_job", cell_yaml]


def file_on_eval(folder: Path, wait_s: float = PRUNE_WAIT_S) -> Callable[[int, dict[str, Any]], bool]:
    """Inside the job: hand each evaluation to the worker through files and take its pruning decision."""

    def on_eval(step: int, metrics: dict[str, Any]) -> bool:
        import torch.distributed as dist

        box = [False]
        if not dist.is_initialized() or dist.get_rank() == 0:
            scalars = {k: float(v) for k, v in metrics.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            atomic_write_text(folder / f"{step}.json", json.dumps({"step": step, "metrics": scalars}))
            answer, deadline = folder / f"{step}.decision", time.monotonic() + wait_s
            while not answer.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            box[0] = answer.exists() and answer.read_text().strip() == "prune"
        if dist.is_initialized():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    return on_eval


class PruneAnswerer:
    """In the worker: answer the job's evaluations (`<step>.json`) with on_eval's decision (`<step>.decision`)."""

    def __init__(self, folder: Path, on_eval: Callable[[int, dict[str, Any]], bool]):
        self.folder, self.on_eval = folder, on_eval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        for asked in sorted(self.folder.glob("*.json"), key=lambda p: int(p.stem)):
            answer = asked.with_suffix(".decision")
            if answer.exists():
                continue
            data = json.loads(asked.read_text())
            try:
                prune = bool(self.on_eval(int(data["step"]), data["metrics"]))
            except Exception:  # noqa: BLE001 - a storage hiccup must not stall the job: go on
                prune = False
            atomic_write_text(answer, "prune" if prune else "go")

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self._answer()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._answer()


def torchrun_cell(nproc: int, env: dict[str, str] | None = None) -> Callable[..., RunRecord]:
    """A run_fn for worker.run_trial that trains each cell as a torchrun job of `nproc` processes."""

    def run(cfg: Config, on_eval: Callable | None = None, log: Callable | None = None) -> RunRecord:
        folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
        folder.mkdir(parents=True, exist_ok=True)
        chash = config_hash(cfg)
        if (done := completed_record(folder, chash)) is not None:
            return done
        record_path = folder / RECORD_FILE
        record_path.unlink(missing_ok=True)  # a failed attempt's record must not pass for this attempt's
        cell_yaml = folder / CELL_CONFIG
        atomic_write_text(cell_yaml, yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        prune_dir = folder / PRUNE_DIR
        for old_file in prune_dir.glob("*"):  # a previous attempt's questions and answers
            old_file.unlink()
        job_env = {**os.environ, **(env or {})}
        answerer = None
        if on_eval is not None:
            prune_dir.mkdir(exist_ok=True)
            job_env[PRUNE_ENV] = str(prune_dir.resolve())
            answerer = PruneAnswerer(prune_dir, on_eval)
        try:
            with open(folder / JOB_LOG, "a") as job_log:
                proc = subprocess.run(torchrun_command(nproc, str(cell_yaml)), env=job_env, stdout=job_log,
                                      stderr=subprocess.STDOUT, cwd=os.getcwd(),
                                      preexec_fn=ending_with_this_process())  # ends with its worker
        finally:
            if answerer is not None:
                answerer.stop()
        if not record_path.exists():
            tail = (folder / JOB_LOG).read_text().strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"torchrun exited with status {proc.returncode} without a run record "
                               f"({folder / JOB_LOG}: {tail[0][:200]})")
        record = read_record(record_path)
        if record.config_hash != chash:
            raise RuntimeError(f"{record_path}: written for config {record.config_hash}, expected {chash}")
        return record

    return run


def main(argv: list[str] | None = None) -> int:
    """One rank of a cell job: `python -m study.search.cell_job CELL.yaml` (started by torchrun)."""
    from study.config_files import load_config
    from study.run import run_one

    argv = sys.argv[1:] if argv is None else argv
    cfg = load_config(argv[0], argv[1:])
    prune_dir = os.environ.get(PRUNE_ENV)
    record = run_one(cfg, on_eval=file_on_eval(Path(prune_dir)) if prune_dir else None)
    print(json.dumps({"id": record.id, "status": record.status, "error": record.error}), flush=True)
    return 0 if record.status in ("completed", "pruned") else 1


if __name__ == "__main__":
    sys.exit(main())
