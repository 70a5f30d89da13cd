"""The GPU check's plan (commands, timeouts, budget), its step runner and its README table, all on a CPU."""

import sys
import time
from pathlib import Path

import pytest
import torch

from study.config_files import load_config
from study.throughput.gpu_check import Step, main, markdown, plan, run_steps


def _overrides(argv):
    return [a for a in argv if "=" in a and not a.startswith("--") and "." in a.split("=")[0]]


def test_plan_times_the_model_four_ways_then_torchrun_and_table1_with_compile_last(tmp_path):
    steps = plan(tmp_path, python="py", workers_per_gpu=3, seeds="0,1,2")
    assert [s.name for s in steps] == ["bench fp32", "bench bf16", "bench bf16+channels_last", "torchrun_cell",
                                       "table1", "packing", "bench bf16+channels_last+compile"]
    assert sum(s.timeout_s for s in steps) > 460  # the deadline, not the sum, keeps the check under 8 minutes
    settings = {}
    for s in steps:
        if not s.name.startswith("bench"):
            continue
        assert s.argv[:5] == ("py", "-m", "study", "bench", "configs/base.yaml") and s.writes.endswith(".json")
        cfg = load_config(s.argv[4], _overrides(s.argv))  # every override is a valid config key and value
        assert cfg.model.backbone == "resnet50s" and cfg.bench.batch_size == 8 and cfg.bench.image_size == (512, 512)
        assert cfg.train.force_settings and not cfg.run.deterministic  # each row as named; cuDNN autotuning on
        settings[s.name] = (cfg.train.amp, cfg.train.channels_last, cfg.train.compile, s.timeout_s)
    assert settings == {"bench fp32": (False, False, False, 90), "bench bf16": (True, False, False, 75),
                        "bench bf16+channels_last": (True, True, False, 75),
                        "bench bf16+channels_last+compile": (True, True, True, 240)}
    torchrun = steps[3]
    assert torchrun.argv[1:5] == ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1")
    assert torchrun.argv[5:9] == ("-m", "study", "run", "configs/probe.yaml") and torchrun.timeout_s == 150
    load_config("configs/probe.yaml", _overrides(torchrun.argv))
    table1 = steps[4]
    assert table1.argv[1:5] == ("-m", "study", "sweep", "configs/studies/table1.yaml")
    assert table1.argv[5:] == ("--workers-per-gpu", "3", "--seeds", "0,1,2", "--out", str(tmp_path / "table1"))
    assert table1.needs == ("optuna",) and table1.timeout_s == 300
    from study.search.runner import parse_args

    args = parse_args(list(table1.argv[4:]))  # the sweep accepts the flags
    load_config("configs/probe.yaml", args.overrides)
    packing = steps[5]  # the packing measurement only: the product trains one run at a time
    assert not any("run.pack" in a for s in steps for a in s.argv)
    assert packing.argv[1:4] == ("-m", "study.throughput.packing", "configs/probe.yaml")
    assert packing.argv[4:] == ("--members", "2,4,8", "--device", "cuda", "--out", str(tmp_path / "packing.json"))


@pytest.mark.slow  # a few processes and a 3 s timeout
def test_steps_run_with_timeouts_that_end_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    spawner = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
               f"time.sleep(60)']); open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    steps = [Step("ok", "prints", (sys.executable, "-c", "print('fine')"), 30),
             Step("fails", "exits 3", (sys.executable, "-c", "import sys; print('why'); sys.exit(3)"), 30),
             Step("slow", "a process with a child, past its timeout", (sys.executable, "-c", spawner), 3),
             Step("needs", "a module that is not there", (sys.executable, "-c", ""), 30, needs=("no_such_mod_x",))]
    t0 = time.monotonic()
    done = run_steps(steps, budget_s=60, log=lambda line: None)
    assert time.monotonic() - t0 < 30
    assert [d["status"] for d in done] == ["ok", "failed (status 3)", "timed out after 3 s", "skipped"]
    assert done[1]["tail"] == ["why"] and "no_such_mod_x not importable" in done[3]["reason"]
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
    skipped = run_steps(steps[:1], budget_s=5, log=lambda line: None)  # less than MIN_STEP_S left
    assert skipped[0]["status"] == "skipped" and "budget" in skipped[0]["reason"]


def test_markdown_table_from_a_report():
    bench = {"train_img_s": 41.25, "infer_img_s": 130.0, "latency_ms_p50": 9.5, "peak_mem_mb": 20480.0,
             "train_gflop_s": 400_000.0, "mfu": 0.404, "utilisation_train": 0.5}
    report = {"device": "NVIDIA H200", "torch": "2.x", "cuda": "13.0", "finished_at": "T", "total_seconds": 400.2,
              "steps": [{"name": "bench bf16", "status": "ok", "result": bench},
                        {"name": "bench bf16+channels_last+compile", "status": "skipped",
                         "reason": "out of the 460 s budget", "result": None},
                        {"name": "torchrun_cell", "status": "ok", "seconds": 41.0,
                         "result": {"world_size": 1, "bn": "SyncBatchNorm", "miou": 0.8012}},
                        {"name": "table1", "status": "ok", "seconds": 95.4, "result": {"cells": 14, "completed": 14},
                         "argv": ["py", "-m", "study", "sweep", "t.yaml", "--workers-per-gpu", "4"]},
                        {"name": "packing", "status": "ok", "seconds": 60.0,
                         "result": {"rows": [{"members": 2, "ratio": 1.8}, {"members": 8, "ratio": 4.25}],
                                    "members": 8, "why": "packing pays here: 4.25x a member's step at K=8"}}]}
    text = markdown(report)
    assert "| bf16 | 41.2 | 130.0 | 9.5 ms | 20.0 GiB | 400 | 40.4% | 50.0% |" in text
    assert "| bf16+channels_last+compile | skipped: out of the 460 s budget |" in text
    assert "one-GPU torchrun job: 41 s, world size 1, SyncBatchNorm, mIoU 80.1." in text
    assert "95 s for 14 cells (14 completed), 4 workers on the GPU, one run at a time each." in text
    assert ("Packing measurement (not in the product), a member's step packed against one run's: K=2 1.80x; "
            "K=8 4.25x (packing pays here: 4.25x a member's step at K=8).") in text
    assert "run.pack" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "gc")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA GPU" in out and not (tmp_path / "gc").exists()
    assert main(["--plan", "--out", str(tmp_path / "gc")]) == 0
    assert "torch.distributed.run" in capsys.readouterr().out
