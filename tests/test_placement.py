"""Local worker placement without GPUs: the pure plan, the worker processes it becomes, `--dry-run`, the GPU check."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.search import placement, runner, supervise
from study.search.placement import (
    PlacementError,
    Slot,
    check_gpus,
    local_plan,
    parse_gpus,
    physical_ids,
    plan_workers,
)
from study.search.queue import cells_left
from study.search.space import load_study

REPO = Path(__file__).resolve().parents[1]


def test_cpu_machine_splits_the_cores_as_before():
    slots = plan_workers(None, workers=4, cpu_count=16)
    assert [s.gpus for s in slots] == [()] * 4 and {s.threads for s in slots} == {4}
    assert plan_workers([], workers=None, cpu_count=2) == [Slot(0, (), 2, 1)]
    assert plan_workers(None, workers=3, cpu_count=2)[0].threads == 1  # never 0 threads
    env = slots[0].env()
    assert env["OMP_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == ""


def test_one_worker_per_gpu_each_pinned():
    slots = plan_workers([0, 1, 2, 3], cpu_count=32)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    assert {s.threads for s in slots} == {8} and {s.procs for s in slots} == {1}
    assert slots[2].label() == "worker 2 (GPU 2, 8 threads)"


def test_workers_n_on_a_gpu_machine_spread_over_the_gpus():
    assert [s.device for s in plan_workers(list(range(8)), workers=8, cpu_count=16)] == [str(i) for i in range(8)]
    assert [s.device for s in plan_workers([0, 1], workers=3, cpu_count=6)] == ["0", "1", "0"]


def test_k_workers_per_gpu_alternate_gpus():
    slots = plan_workers([0, 1], workers_per_gpu=3, cpu_count=12)
    assert [s.device for s in slots] == ["0", "1", "0", "1", "0", "1"]
    assert {s.threads for s in slots} == {2}


def test_gpus_per_cell_groups_gpus_and_splits_threads_per_rank():
    slots = plan_workers([0, 1, 2, 3, 4, 5, 6, 7], gpus_per_cell=4, cpu_count=64)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1,2,3", "4,5,6,7"]
    assert {s.procs for s in slots} == {4} and {s.threads for s in slots} == {8}
    cpu = plan_workers(None, workers=1, gpus_per_cell=2, cpu_count=2)  # gloo processes on CPU
    assert cpu == [Slot(0, (), 1, 2)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpus=[0, 1, 2], gpus_per_cell=2), "does not divide"),
    (dict(gpus=[0, 1], workers=4, workers_per_gpu=2), "not both"),
    (dict(gpus=None, workers_per_gpu=2), "needs GPUs"),
    (dict(gpus=[0], workers_per_gpu=0), "must be >= 1"),
])
def test_impossible_plans_are_one_line_errors(kwargs, message):
    with pytest.raises(PlacementError, match=message) as e:
        plan_workers(cpu_count=8, **kwargs)
    assert "\n" not in str(e.value)


def test_gpu_ids_parsed_checked_and_mapped_through_the_parents_visible_devices():
    assert parse_gpus(None) is None and parse_gpus("cpu") == [] and parse_gpus("0, 2") == [0, 2]
    with pytest.raises(PlacementError, match="distinct"):
        parse_gpus("1,1")
    with pytest.raises(PlacementError, match="expected comma-separated"):
        parse_gpus("a")
    check_gpus([0, 1], 2)
    with pytest.raises(PlacementError, match="this machine has GPUs 0-1 \\(no GPU 2,5\\)"):
        check_gpus([0, 2, 5], 2)
    with pytest.raises(PlacementError, match="has no GPU"):
        check_gpus([0], 0)
    assert physical_ids([0, 1], "4,6") == [4, 6] and physical_ids([0, 1], None) == [0, 1]


def test_local_workers_pin_each_process(monkeypatch, tmp_path):
    args = runner.parse_args(["s.yaml", "train.steps=2", "--gpus", "0,1", "--workers-per-gpu", "2"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(placement, "usable_cores", lambda: 8)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slots, count = local_plan(args)
    assert count == 2
    specs = supervise.local_workers(args, "journal:x", slots)
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in specs] == ["0", "1", "0", "1"]
    assert all("run.threads=2" in w.argv and "--worker-only" in w.argv for w in specs)
    assert "--gpus-per-cell" not in specs[0].argv
    args = runner.parse_args(["s.yaml", "--gpus-per-cell", "2"])  # default: every visible GPU
    slots, _ = local_plan(args)
    spec = supervise.local_workers(args, "journal:x", slots)[0]
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,1" and spec.argv[-2:] == ("--gpus-per-cell", "2")
    args = runner.parse_args(["s.yaml", "--gpus", "0,3"])
    with pytest.raises(PlacementError, match="no GPU 3"):
        local_plan(args)
    args = runner.parse_args(["s.yaml", "--gpus", "0,3", "--dry-run"])  # --dry-run works anywhere
    assert [s.device for s in local_plan(args, check=not args.dry_run)[0]] == ["0", "3"]


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "study.yaml"
    (tmp_path / "base.yaml").write_text("train:\n  steps: 2\n")
    path.write_text("name: plan\nbase_config: base.yaml\nseeds: [0, 1]\nvariants:\n  A: {}\n  B: {model.ppm: false}\n")
    return path


def sweep(*argv):
    return subprocess.run([sys.executable, "-m", "study", "sweep", *map(str, argv)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # the sweep command in a subprocess
def test_dry_run_prints_the_plan_and_runs_nothing(study_file, tmp_path):
    proc = sweep(study_file, "--out", tmp_path / "out", "--gpus", "0,1,2,3", "--workers-per-gpu", "2",
                 "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[plan] dry run: 4 of 4 cell(s) left")
    assert "  worker 5: CUDA_VISIBLE_DEVICES=1 threads=" in proc.stdout
    assert len([x for x in lines if x.startswith("  worker ")]) == 8
    assert not (tmp_path / "out").exists()  # no storage, no records
    proc = sweep(study_file, "--out", tmp_path / "out", "--gpus", "0,1,2,3")  # no GPU here: one-line error
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no GPU" in proc.stderr


def test_cells_left_reads_the_storage(study_file, tmp_path):
    from helpers import fake_run

    from study.search import queue, worker
    from study.search.storage import open_storage

    spec = load_study(study_file)
    assert cells_left(None, spec) == (4, 4)
    url = f"journal:{tmp_path / 'j.log'}"
    study = queue.open_study(spec, open_storage(url))
    queue.prepare(study, spec, str(tmp_path), ())
    assert cells_left(study, spec) == (4, 4)  # enqueued is not done
    worker.work(spec, url, str(tmp_path), (), fake_run)
    assert cells_left(study, spec) == (0, 4)


def test_pick_device_follows_the_local_rank_within_the_pinned_gpus(monkeypatch):
    from study.env import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", 3) == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert pick_device("auto", 1) == torch.device("cuda:1") and pick_device("cuda", 0) == torch.device("cuda:0")
    assert pick_device("cuda:1", 0) == torch.device("cuda:1") and pick_device("cpu", 1) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"cuda:2 \(local rank 2\) but this process sees 2 GPU\(s\) "
                                         r"\(CUDA_VISIBLE_DEVICES=4,5\)"):
        pick_device("auto", 2)


def test_provenance_names_the_cpu_model(tmp_path, monkeypatch):
    import builtins

    import torch

    from study import env

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: avx2\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k))
    assert env.cpu_model() == "AMD EPYC 7B13"
    assert env.provenance(torch.device("cpu"))["cpu"] == "AMD EPYC 7B13"
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    monkeypatch.setattr(env.platform, "processor", lambda: "i386")
    assert env.cpu_model() == "i386"


def test_without_gpus_the_worker_count_comes_from_the_cores_and_a_runs_threads(monkeypatch):
    import argparse

    from study.search import runner

    monkeypatch.setattr(runner, "usable_cores", lambda: 8)
    monkeypatch.setattr(runner, "gpu_count", lambda: 0)

    def args(**kw):
        return argparse.Namespace(**{"workers": None, "executor": "local", "gpus": None, **kw})

    a = args()
    assert runner.cpu_workers(a, 0) == ("8 worker(s): 8 usable core(s), 1 thread(s) a run (run.threads unset: one; "
                                        "--workers N overrides)") and a.workers == 8
    a = args()
    assert runner.cpu_workers(a, 3).startswith("2 worker(s): 8 usable core(s), 3 thread(s) a run (run.threads;")
    assert a.workers == 2
    a = args()
    assert runner.cpu_workers(a, 16) is not None and a.workers == 1  # never fewer than one
    a = args(workers=3)
    assert runner.cpu_workers(a, 0) is None and a.workers == 3  # --workers overrides
    assert runner.cpu_workers(args(executor="slurm"), 0) is None
    monkeypatch.setattr(runner, "gpu_count", lambda: 2)
    assert runner.cpu_workers(args(), 0) is None  # GPUs: one worker per GPU, as before
    assert runner.cpu_workers(args(gpus="cpu"), 0) is not None  # GPUs there but not asked for
