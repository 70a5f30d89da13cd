"""How old_grid.journal and old_search.journal were written: by commit 4d5d93b, before studies could grow.

Run from a checkout of that commit: `python tests/data/make_old_journals.py OUT`. It finishes a grid (FCN, B1-AVE;
seed 0), then adds seed 1 and then variant B2-AVE (both crashed the worker in that version), then re-runs the
finished grid (which crashed too), and finishes a 3-trial search. The worker's host name is replaced by
`fixture-host`, so the dead workers are recognised by their stale heartbeats on any machine.
"""

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

OUT = Path(sys.argv[1])
BASE = "train: {steps: 3}\nbench: {enabled: false}\n"
VARIANTS = {"FCN": "{model.ppm: false}", "B1-AVE": "{model.bins: [1]}", "B2-AVE": "{model.bins: [2]}"}


def sweep(study: Path) -> None:
    code = ("import sys; sys.path.insert(0, 'tests'); from helpers import fake_run; "
            "from study.search import runner; "
            f"sys.exit(runner.main([{str(study)!r}, '--out', {str(OUT / 'results')!r}], run_fn=fake_run))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(study.name, proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-1])


def grid(variants: list[str], seeds: list[int]) -> None:
    path = OUT / "old_grid.yaml"
    path.write_text(f"name: old_grid\nbase_config: base.yaml\nseeds: {seeds}\nvariants:\n"
                    + "".join(f"  {v}: {VARIANTS[v]}\n" for v in variants))
    sweep(path)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    (OUT / "base.yaml").write_text(BASE)
    grid(["FCN", "B1-AVE"], [0])  # finished
    grid(["FCN", "B1-AVE"], [0, 1])  # a seed added: "CategoricalDistribution does not support dynamic value space"
    grid(["FCN", "B1-AVE", "B2-AVE"], [0])  # a variant added: the same
    grid(["FCN", "B1-AVE"], [0])  # the finished grid again: "'B2-AVE' not in ('FCN', 'B1-AVE')"
    search = OUT / "old_search.yaml"
    search.write_text("name: old_search\nbase_config: base.yaml\nsearch:\n  n_trials: 3\n  space:\n"
                      "    train.lr: {type: float, low: 0.001, high: 0.1, log: true}\n"
                      "    model.bins: {type: categorical, choices: [[1], [1, 2, 3, 6]]}\n")
    sweep(search)
    host = re.escape(socket.gethostname())
    for name in ("old_grid", "old_search"):
        text = (OUT / "results" / name / "optuna.journal").read_text()
        (OUT / f"{name}.journal").write_text(re.sub(f'"{host}:(\\d+)"', r'"fixture-host:\1"', text))


if __name__ == "__main__":
    main()
