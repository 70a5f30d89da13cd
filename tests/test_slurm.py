"""`--executor slurm` through submitit: a database storage is required, every job gets its own GPUs (not GPU 0 for
all, hydra #2757), and with submitit's local executor two jobs run a tiny grid exactly once on CPU."""

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_tiny_yaml  # noqa: I001

from study.search import slurm
from study.search.placement import PlacementError

submitit = pytest.importorskip("submitit")
REPO = Path(__file__).resolve().parents[1]
NAME = f"sl_{uuid.uuid4().hex[:8]}"  # unique: the PostgreSQL server, when given, outlives the test
PG_URL = os.environ.get("STUDY_TEST_POSTGRES_URL", "")


def sweep(*argv, timeout=600):
    return subprocess.run([sys.executable, "-m", "study", "sweep", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def study_file(tmp_path):
    write_tiny_yaml(tmp_path / "tiny.yaml", ("train.steps=4", "bench.enabled=false", "eval.qualitative=0"))
    path = tmp_path / "study.yaml"
    path.write_text(f"name: {NAME}\n" "base_config: tiny.yaml\nseeds: [0, 1]\nvariants:\n  FCN: {model.ppm: false}\n"
                    "  B1236-AVE: {model.bins: [1, 2, 3, 6]}\n")
    return path


def test_slurm_needs_a_database_storage(study_file, tmp_path):
    for extra in ((), ("--storage", f"journal:{tmp_path / 'j'}")):
        proc = sweep(study_file, "--out", tmp_path, "--executor", "slurm", *extra)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
        assert "share the study through a database" in proc.stderr
    slurm.check_storage("postgresql://u@h/db")


def test_local_jobs_get_disjoint_gpus():
    assert [slurm.local_job_gpus(j, 2, 8) for j in range(4)] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert slurm.local_job_gpus(3, 1, 0) == ()  # no GPU: CPU jobs
    with pytest.raises(PlacementError, match="job 2 needs GPUs 4-5, this machine has 4"):
        slurm.local_job_gpus(2, 2, 4)


class FakeExecutor:
    """Records the parameters each submitted job was given."""

    def __init__(self, folder, cluster):
        self.cluster, self.params, self.submitted = cluster, {}, []

    def update_parameters(self, **kw):
        self.params.update(kw)

    def submit(self, fn, *args):
        self.submitted.append(dict(self.params))
        self.args = getattr(self, "args", []) + [args]
        return argparse.Namespace(job_id=str(len(self.submitted)))


def args_for(*argv):
    from study.search.runner import parse_args

    return parse_args(["s.yaml", "--executor", "slurm", "--storage", "postgresql://u@h/db", *argv])


def test_every_local_job_is_given_its_own_gpus(monkeypatch, tmp_path):
    from study.search.supervise import STORAGE_ENV

    monkeypatch.setenv(STORAGE_ENV, "before")  # submit sets it: monkeypatch restores it after the test
    made = []
    monkeypatch.setattr(submitit, "AutoExecutor", lambda folder, cluster: made.append(FakeExecutor(folder, cluster))
                        or made[-1])
    monkeypatch.setattr(submitit, "LocalExecutor", lambda folder: made.append(FakeExecutor(folder, "local"))
                        or made[-1])
    monkeypatch.setattr(slurm, "gpu_count", lambda: 4)
    slurm.submit(args_for("--slurm-cluster", "local", "--slurm-jobs", "2", "--slurm-gpus-per-job", "2"), "u",
                 "s", tmp_path)
    assert [p["visible_gpus"] for p in made[0].submitted] == [(0, 1), (2, 3)]
    assert made[0].submitted[0]["gpus_per_node"] == 2
    slurm.submit(args_for("--slurm-partition", "gpu", "--slurm-time", "240", "--slurm-jobs", "3",
                          "--slurm-gpus-per-job", "8", "--slurm-cpus-per-job", "64"), "u", "s", tmp_path)
    real = made[1]
    assert real.cluster == "slurm" and len(real.submitted) == 3
    assert real.params["slurm_partition"] == "gpu" and real.params["timeout_min"] == 240
    assert real.params["cpus_per_task"] == 64
    assert real.params["gpus_per_node"] == 8 and "visible_gpus" not in real.params


def test_node_plan_for_dry_run():
    slots = slurm.node_slots(args_for("--slurm-gpus-per-job", "4", "--gpus-per-cell", "2"), cpu_count=16)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3"] and {s.threads for s in slots} == {4}


@pytest.mark.slow
def test_two_local_jobs_run_a_grid_exactly_once(study_file, tmp_path):
    """On the PostgreSQL server of STUDY_TEST_POSTGRES_URL when set (as on a cluster), else an SQLite file."""
    url = PG_URL or f"sqlite:///{tmp_path / 'study.db'}"
    proc = sweep(study_file, "--out", tmp_path / "out", "--executor", "slurm", "--slurm-cluster", "local",
                 "--slurm-jobs", "2", "--storage", url)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "submitted 2 job(s)" in log and "every cell ran exactly once" in log
    assert log.count("1 worker(s), exit codes [0]") == 2
    df = pd.read_parquet(tmp_path / "out" / NAME / "runs.parquet")
    assert len(df) == 4 and (df["status"] == "completed").all()


def test_slurm_dry_run_prints_the_jobs_and_the_node_plan(study_file, tmp_path):
    proc = sweep(study_file, "--out", tmp_path / "out", "--executor", "slurm", "--storage",
                 f"sqlite:///{tmp_path / 'db'}", "--slurm-jobs", "3", "--slurm-gpus-per-job", "8",
                 "--slurm-partition", "gpu", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "4 of 4 cell(s) left" in proc.stdout and "3 SLURM job(s), partition gpu" in proc.stdout
    assert "  worker 7: CUDA_VISIBLE_DEVICES=7 threads=" in proc.stdout


def test_a_node_plans_its_workers_as_the_sweep_command_does(monkeypatch):
    """run_node on a node whose job was given GPUs 4-7 and 16 cores: one worker per GPU, pinned, 4 threads each,
    the storage URL in their environment only."""
    from study.search import placement
    from study.search.supervise import STORAGE_ENV

    started = []

    class Done:
        def wait(self):
            return 0

    monkeypatch.setattr(placement, "gpu_count", lambda: 4)
    monkeypatch.setattr(placement, "usable_cores", lambda: 16)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setattr(slurm, "start", lambda spec: started.append(spec) or Done())
    url = "postgresql://u:pw@h/db"
    args = argparse.Namespace(**{**vars(args_for()), "executor": "local", "workers": None, "gpus": None})
    result = slurm.run_node(args, url)
    assert result["exit_codes"] == [0, 0, 0, 0]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in started] == ["4", "5", "6", "7"]
    assert {w.env["OMP_NUM_THREADS"] for w in started} == {"4"} and {w.env[STORAGE_ENV] for w in started} == {url}
    assert not any("pw" in arg for w in started for arg in w.argv)


def test_the_storage_password_reaches_jobs_through_the_environment_only(monkeypatch, tmp_path):
    """submitit pickles a job's arguments under results/<study>/slurm/: no password there; the job reads the whole
    URL from $STUDY_STORAGE_URL, which sbatch exports from the submitting environment."""
    import pickle

    from study.search.supervise import STORAGE_ENV

    made = []
    monkeypatch.setattr(submitit, "AutoExecutor", lambda folder, cluster: made.append(FakeExecutor(folder, cluster))
                        or made[-1])
    monkeypatch.setenv(STORAGE_ENV, "before")  # submit sets it: monkeypatch restores it after the test
    url = "postgresql://u:pw-s3cret@h/db"
    args = parse_args_with_storage(url)
    slurm.submit(args, url, "s", tmp_path)
    blob = pickle.dumps(made[0].args)
    assert b"pw-s3cret" not in blob and b"postgresql://u:***@h/db" in blob
    assert os.environ[STORAGE_ENV] == url
    seen = []
    monkeypatch.setattr(slurm, "local_plan", lambda a: ([], None))
    monkeypatch.setattr(slurm, "local_workers", lambda a, u, slots: seen.append(u) or [])
    slurm.run_node(*made[0].args[0])
    assert seen == [url]  # the job works with the whole URL from its environment


def parse_args_with_storage(url):
    from study.search.runner import parse_args

    return parse_args(["s.yaml", "--executor", "slurm", "--storage", url])
