"""`python -m study.search.scale [--storage URL] [--workers 1,4,16]`: the runner's own overhead per cell, measured.

W local worker processes run a grid study through the real queue (study/search/queue.py: claim under the study
lock) and the real worker (study/search/worker.py: run_trial, heartbeat, record stored in the trial, tell) on
stand-in cells that do not train: each returns a completed record of `--record-kb` KB (a probe cell's is about
11 KB) after `--cell-ms` milliseconds. All workers start claiming at once (after a barrier), so the numbers are
the storage's, not process start-up's. Per cell it times:
- claim: claim() from asking to holding a RUNNING trial (the study lock, the scan of WAITING trials);
- setup: run_trial up to the cell's start (parameters, config hash, worker and heartbeat attributes);
- tell: from the cell's end to the trial's end (the record into the storage, metrics, tell).
It reports medians, 95th percentiles and maxima per worker count, the cells per second the storage sustained,
and audits that every cell completed exactly once. Storage: a journal file in a fresh folder (the default) or a
database URL (`postgresql://...`; each run uses a study of its own name).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

STUDY_FILE = "configs/studies/table1.yaml"


def study_spec(name: str, cells: int):
    """table1's grid under another name, with enough seeds for at least `cells` cells."""
    from study.search.space import load_study

    spec = load_study(STUDY_FILE)
    seeds = tuple(range(math.ceil(cells / len(spec.variants))))
    return dataclasses.replace(spec, name=name, seeds=seeds)


def stand_in(record_kb: float, cell_ms: float, marks: list[float]):
    """A run_fn that trains nothing: waits cell_ms, returns a completed record of about record_kb KB."""
    from study.config import config_hash
    from study.record import RunRecord, run_id

    def run(cfg, on_eval=None, log=None) -> RunRecord:
        marks.append(time.perf_counter())
        time.sleep(cell_ms / 1000)
        padding = "x" * int(record_kb * 1024)
        record = RunRecord(id=run_id(cfg.run.variant, cfg.run.seed), study=cfg.run.study, variant=cfg.run.variant,
                           seed=cfg.run.seed, config=cfg.to_dict(), config_hash=config_hash(cfg), status="completed",
                           metrics={"miou": 0.5, "pixel_acc": 0.9, "mean_acc": 0.6, "per_image": {"pad": padding}})
        marks.append(time.perf_counter())
        return record

    return run


def worker(url: str, name: str, cells: int, out: Path, go: Path, record_kb: float, cell_ms: float) -> None:
    """One worker: wait for the barrier, then claim and run stand-in cells until none is left; write timings."""
    from study.search.queue import claim, open_study
    from study.search.storage import open_storage
    from study.search.worker import run_trial

    spec = study_spec(name, cells)
    study = open_study(spec, open_storage(url))
    out.with_suffix(".ready").write_text("")
    while not go.exists():
        time.sleep(0.01)
    marks: list[float] = []
    run_fn = stand_in(record_kb, cell_ms, marks)
    rows = []
    while True:
        t0 = time.perf_counter()
        trial = claim(study, spec, url)
        t1 = time.perf_counter()
        if trial is None:
            break
        run_trial(study, trial, spec, url, str(out.parent / "results"), (), run_fn)
        t2 = time.perf_counter()
        start, end = marks[-2], marks[-1]
        rows.append({"claim": t1 - t0, "setup": start - t1, "tell": t2 - end, "cell": end - start, "at": t0})
    out.write_text(json.dumps({"rows": rows, "empty_claim": t1 - t0}))


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(1000 * v for v in values)
    if not ms:
        return {}
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return {"median_ms": statistics.median(ms), "p95_ms": p95, "max_ms": ms[-1], "n": len(ms)}


def prefill(study, n: int, record_kb: float) -> None:
    """n finished cells from an earlier sweep, each with its record in the trial (as worker.run_trial stores it)."""
    import optuna

    padding = "x" * int(record_kb * 1024)
    trials = [optuna.trial.create_trial(  # no parameters: the grid's distributions stay as the workers set them
        value=0.5, user_attrs={"cell": f"EARLIER__s{i}", "variant": "EARLIER", "seed": i, "record": {"pad": padding}})
        for i in range(n)]
    study.add_trials(trials)


def measure(url_base: str, workers: int, cells: int, record_kb: float, cell_ms: float,
            earlier: int = 0) -> dict[str, Any]:
    """One (storage, worker count) point: prepare a fresh study (with `earlier` finished cells in it), run the
    workers, gather and audit."""
    from optuna.trial import TrialState

    from study.search.queue import open_study, prepare, trials_by_cell
    from study.search.storage import open_storage, study_lock

    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        folder = Path(tmp)
        name = f"scale_w{workers}_{uuid.uuid4().hex[:8]}"
        url = f"journal:{folder / 'optuna.journal'}" if url_base == "journal" else url_base
        spec = study_spec(name, cells)
        storage = open_storage(url)
        study = open_study(spec, storage)
        if earlier:
            prefill(study, earlier, record_kb)
        t0 = time.perf_counter()
        with study_lock(storage, url, name):
            prepare(study, spec, str(folder / "results"), ())
        enqueue_s = time.perf_counter() - t0
        go = folder / "go"
        outs = [folder / f"w{i}.json" for i in range(workers)]
        procs = [subprocess.Popen([sys.executable, "-m", "study.search.scale", "--worker", url, name, str(cells),
                                   str(out), str(go), str(record_kb), str(cell_ms)]) for out in outs]
        while not all(o.with_suffix(".ready").exists() for o in outs):
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a worker failed to start (see above)")
            time.sleep(0.05)
        t0 = time.perf_counter()
        go.write_text("")
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        if any(codes):
            raise RuntimeError(f"worker exit codes {codes}")
        rows = [r for o in outs for r in json.loads(o.read_text())["rows"]]
        t0 = time.perf_counter()
        by_cell = trials_by_cell(open_study(spec, open_storage(url)).get_trials(deepcopy=False))
        scan_s = time.perf_counter() - t0  # a fresh reader loading every trial (what progress and the report do)
        by_cell = {c: ts for c, ts in by_cell.items() if not c.startswith("EARLIER__")}
        once = sum(1 for ts in by_cell.values() if [t.state for t in ts].count(TrialState.COMPLETE) == 1)
        size = (folder / "optuna.journal").stat().st_size if url_base == "journal" else None
        return {"workers": workers, "cells": len(by_cell), "earlier_cells": earlier, "scan_s": scan_s, "completed_once": once, "enqueue_s": enqueue_s,
                "wall_s": wall, "cells_per_s": len(rows) / wall, "claim": _stats([r["claim"] for r in rows]),
                "setup": _stats([r["setup"] for r in rows]), "tell": _stats([r["tell"] for r in rows]),
                "per_worker_cells": [len(json.loads(o.read_text())["rows"]) for o in outs],
                "journal_bytes": size}


def table(points: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    def cell(p: dict[str, Any], key: str) -> str:
        return f"{p[key]['median_ms']:.0f} / {p[key]['p95_ms']:.0f}"

    rows = []
    for p in points:
        rows.append((p["storage"], p["workers"], p["earlier_cells"], p["cells"], f"{p['wall_s']:.1f}",
                     f"{p['cells_per_s']:.1f}", cell(p, "claim"), cell(p, "setup"), cell(p, "tell"),
                     f"{1000 * p['scan_s']:.0f}", f"{p['completed_once']}/{p['cells']}"))
    return tabulate(rows, headers=["storage", "workers", "earlier cells", "cells", "wall s", "cells/s",
                                   "claim ms (median / p95)", "setup ms", "tell ms", "full read ms",
                                   "exactly once"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        url, name, cells, out, go, kb, ms = argv[1:8]
        worker(url, name, int(cells), Path(out), Path(go), float(kb), float(ms))
        return 0
    p = argparse.ArgumentParser(prog="python -m study.search.scale", description=__doc__.splitlines()[0])
    p.add_argument("--storage", action="append", default=None,
                   help="'journal' (default) or a database URL; repeat to compare")
    p.add_argument("--workers", default="1,4,16", help="worker counts (default 1,4,16)")
    p.add_argument("--cells-per-worker", type=int, default=4, help="stand-in cells per worker (default 4)")
    p.add_argument("--record-kb", type=float, default=11.0, help="size of each stand-in record (default 11)")
    p.add_argument("--cell-ms", type=float, default=0.0, help="how long a stand-in cell takes (default 0)")
    p.add_argument("--earlier", default="0", help="finished cells already in the study, e.g. 0,2000 (default 0)")
    p.add_argument("--out", default="results/bench/scale.json", help="JSON file (default %(default)s)")
    args = p.parse_args(argv)
    from study.search.storage import redact

    points = []
    for url in args.storage or ["journal"]:
        for earlier in (int(x) for x in args.earlier.split(",")):
            for w in (int(x) for x in args.workers.split(",")):
                print(f"[scale] {redact(url)}: {w} worker(s), {earlier} earlier cells ...", flush=True)
                point = measure(url, w, w * args.cells_per_worker, args.record_kb, args.cell_ms, earlier)
                points.append({"storage": "journal" if url == "journal" else redact(url).split("://")[0], **point})
    print(table(points))
    from study.atomic import atomic_write_text

    machine = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    atomic_write_text(Path(args.out), json.dumps({"points": points, "machine": machine, "args": vars(args)},
                                                 indent=2, default=str) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
