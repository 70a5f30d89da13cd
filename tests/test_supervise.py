"""Local worker processes: the storage URL reaches them outside their command lines, and they end with their
supervising command however it ends (SIGKILL included)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from study.search import runner, supervise
from study.search.supervise import STORAGE_ENV

REPO = Path(__file__).resolve().parents[1]
SECRET_URL = "postgresql://alice:s3cret-pw@db-host:5432/optuna"


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_workers_are_handed_the_storage_url_outside_their_command_lines(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    args = runner.parse_args(["s.yaml", "--storage", SECRET_URL, "--workers", "2", "--out", str(tmp_path)])
    slots, _ = runner.plan_for(args)
    specs = supervise.local_workers(args, args.storage, slots)
    assert len(specs) == 2
    for spec in specs:
        assert "s3cret" not in " ".join(spec.argv) and "--storage" not in spec.argv
        assert spec.env[STORAGE_ENV] == SECRET_URL and spec.env["OMP_NUM_THREADS"] == "1"
    # a worker reads it back from its environment
    monkeypatch.setenv(STORAGE_ENV, SECRET_URL)
    assert runner.parse_args([*specs[0].argv[4:]]).storage == SECRET_URL
    assert runner.parse_args(["s.yaml", "--storage", "sqlite:///x.db"]).storage == "sqlite:///x.db"
    # what start() spawns: that argv, and the URL only in the environment
    probe = supervise.WorkerSpec("probe", (sys.executable, "-c", "import os; print(os.environ['STUDY_STORAGE_URL'])"),
                                 specs[0].env)
    proc = supervise.start(probe)
    assert proc.args == list(probe.argv) and proc.wait(30) == 0


SUPERVISOR = textwrap.dedent("""
    import sys
    from study.search import supervise

    def launch(spec):
        proc = supervise.start(spec)
        print(proc.pid, flush=True)
        return proc

    sleeper = supervise.WorkerSpec("sleeper", (sys.executable, "-c", "import time; time.sleep(120)"))
    supervise.supervise([sleeper, sleeper], on_death=lambda pid: 0, max_restarts=0, poll_s=0.05, launch=launch)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_workers_end_when_their_supervisor_is_sigkilled():
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR], cwd=REPO, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    workers: list[int] = []
    try:
        workers += [int(sup.stdout.readline()) for _ in range(2)]
        assert all(alive(pid) for pid in workers)
        os.kill(sup.pid, signal.SIGKILL)  # no handler, no finally: only the kernel can end the workers now
        sup.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "a worker outlived its SIGKILLed supervisor"
    finally:
        sup.kill()
        for pid in workers:  # only if the test failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
