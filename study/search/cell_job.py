"""A cell over several processes: the worker that claimed it runs it as a torchrun (DDP) job and reads its record.

The worker keeps the claim, the heartbeat, retries and the Optuna report exactly as for a one-process cell
(worker.run_trial); only run_fn differs: the resolved cell config is written as YAML into the cell's folder and
`python -m torch.distributed.run --standalone --nproc_per_node G -m study run <cell.yaml>` trains it. Rank 0 writes
record.json, which is read back and returned. Resume works as for any cell: the ranks find the cell's checkpoint.

Not across the process boundary: pruning (the median pruner's should_prune is not asked inside the job, so a
multi-process cell of a search always runs to the end).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import yaml

from study.atomic import atomic_write_text
from study.config import Config, config_hash
from study.record import RECORD_FILE, RunRecord, read_record, run_dir

CELL_CONFIG = "cell.yaml"
JOB_LOG = "torchrun.log"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the torchrun agent gets SIGTERM when its worker dies, so no orphan keeps training a re-queued cell."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def torchrun_command(nproc: int, cell_yaml: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "study", "run", cell_yaml]


def torchrun_cell(nproc: int, env: dict[str, str] | None = None) -> Callable[..., RunRecord]:
    """A run_fn for worker.run_trial that trains each cell as a torchrun job of `nproc` processes."""

    def run(cfg: Config, on_eval: Callable | None = None, log: Callable | None = None) -> RunRecord:
        folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
        folder.mkdir(parents=True, exist_ok=True)
        chash = config_hash(cfg)
        record_path = folder / RECORD_FILE
        if record_path.exists():
            try:
                old = read_record(record_path)
            except ValueError:
                old = None
            if old is not None and old.status == "completed" and old.config_hash == chash:
                return old
            record_path.unlink()  # a failed attempt's record must not pass for this attempt's
        cell_yaml = folder / CELL_CONFIG
        atomic_write_text(cell_yaml, yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        with open(folder / JOB_LOG, "a") as job_log:
            proc = subprocess.run(torchrun_command(nproc, str(cell_yaml)), env={**os.environ, **(env or {})},
                                  stdout=job_log, stderr=subprocess.STDOUT, cwd=os.getcwd(),
                                  preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        if not record_path.exists():
            tail = (folder / JOB_LOG).read_text().strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"torchrun exited with status {proc.returncode} without a run record "
                               f"({folder / JOB_LOG}: {tail[0][:200]})")
        record = read_record(record_path)
        if record.config_hash != chash:
            raise RuntimeError(f"{record_path}: written for config {record.config_hash}, expected {chash}")
        return record

    return run
