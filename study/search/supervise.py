"""Local worker processes of a study: what each one runs (WorkerSpec), starting it, and keeping N of them alive.

`local_workers` turns the plan (placement.py) into one `sweep ... --worker-only` process per slot, pinned to its
GPUs with its share of the cores; the storage URL reaches it in $STUDY_STORAGE_URL, never on its command line.

`supervise` polls the workers; when one dies (a crash, the OOM killer, SIGKILL), it asks the caller to re-queue the
dead worker's cell (which resumes from its checkpoint) and starts a replacement with the same spec, up to a bound
on restarts, one line per restart. A worker that exits 0 has found no work left, one that exits 2 has said
in one line why it cannot work (config, storage, a full disk): neither is replaced. Workers end with the
supervising process, however it ends.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from study.parent_death import ending_with_this_process
from study.search.placement import Slot

STORAGE_ENV = "STUDY_STORAGE_URL"  # the storage URL when --storage is not given; how workers are handed it


@dataclass(frozen=True)
class WorkerSpec:
    """One local worker process: a label for messages, its command line and the environment it adds."""

    label: str  # e.g. "worker 0 (cpu, 1 thread)" or "worker 3 (GPU 1)"
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ (CUDA_VISIBLE_DEVICES, storage URL)


REFUSED = 2  # a worker's exit status after its one-line `error: ...`: restarting it would not help


def worker_argv(args: argparse.Namespace, threads: int, procs: int) -> tuple[str, ...]:
    """The command line of one worker process (`sweep ... --worker-only`); the storage URL is not on it."""
    return ((sys.executable, "-m", "study", "sweep", args.study_file, *args.overrides, f"run.threads={threads}",
             "--worker-only", "--out", args.out)
            + (("--seeds", args.seeds) if args.seeds else ())
            + (("--gpus-per-cell", str(procs)) if procs > 1 else ()))


def local_workers(args: argparse.Namespace, url: str, slots: list[Slot]) -> list[WorkerSpec]:
    """One process per planned worker, pinned to its GPUs (CUDA_VISIBLE_DEVICES) with its share of the cores.

    The storage URL goes in the environment, which only its user can read: a password on a command line is
    visible to anyone on the node (`ps`)."""
    return [WorkerSpec(s.label(), worker_argv(args, s.threads, s.procs), {**s.env(), STORAGE_ENV: url})
            for s in slots]


def start(spec: WorkerSpec) -> subprocess.Popen:
    """Start one worker; on Linux it ends with this process (a SIGKILLed supervisor leaves no worker running)."""
    return subprocess.Popen(list(spec.argv), env={**os.environ, **spec.env}, preexec_fn=ending_with_this_process())


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Supervision:
    """What happened to the workers: restarts made, deaths not replaced (limit reached), failed exits."""

    restarts: int = 0
    limit: int = 0
    unreplaced: int = 0
    requeued: int = 0
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.restarts} worker restart(s) (limit {self.limit}), {self.requeued} cell(s) re-queued"
        if self.unreplaced:
            text += f"; {self.unreplaced} dead worker(s) not replaced: re-run the command to finish"
        return text


def supervise(specs: Sequence[WorkerSpec], *, on_death: Callable[[int], int], max_restarts: int,
              tick: Callable[[], None] | None = None, say: Callable[[str], None] = print,
              poll_s: float = 0.25, tick_s: float = 2.0,
              launch: Callable[[WorkerSpec], subprocess.Popen] = start) -> Supervision:
    """Run one process per spec until all have exited; replace those that die (non-zero exit), up to max_restarts.

    on_death(pid) re-queues the dead worker's cell(s) and returns how many; tick() runs every tick_s (progress)."""
    result = Supervision(limit=max_restarts)
    slots: list[tuple[WorkerSpec, subprocess.Popen]] = [(s, launch(s)) for s in specs]
    last_tick = time.monotonic()
    try:
        while slots:
            time.sleep(poll_s)
            alive: list[tuple[WorkerSpec, subprocess.Popen]] = []
            for spec, proc in slots:
                code = proc.poll()
                if code is None:
                    alive.append((spec, proc))
                    continue
                if code == 0:
                    continue
                if code == REFUSED:  # the worker said why in one line (config, storage, disk): do not retry it
                    result.unreplaced += 1
                    result.log.append(f"{spec.label} stopped with an error (above); not restarted")
                    say(result.log[-1])
                    continue
                requeued = on_death(proc.pid)
                result.requeued += requeued
                line = f"{spec.label} (pid {proc.pid}) {describe_exit(code)}; re-queued {requeued} cell(s)"
                if result.restarts < max_restarts:
                    result.restarts += 1
                    new = launch(spec)
                    alive.append((spec, new))
                    line += f"; restarted as pid {new.pid} ({result.restarts}/{max_restarts})"
                else:
                    result.unreplaced += 1
                    line += f"; not restarted (limit of {max_restarts} restarts reached)"
                result.log.append(line)
                say(line)
            slots = alive
            if tick is not None and time.monotonic() - last_tick >= tick_s:
                tick()
                last_tick = time.monotonic()
    except BaseException:  # Ctrl-C or an error here: do not leave workers running without a supervisor
        for _, proc in slots:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in slots:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    return result
