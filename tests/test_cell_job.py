"""Multi-process cells on CPU (gloo): `sweep --gpus-per-cell 2` runs each cell as a two-rank torchrun job.

A two-cell grid runs exactly once; killed mid-cell (worker, agent and ranks) and run again, it resumes and gives the
same numbers as the uninterrupted study. Pruning decisions cross the process boundary through files.
"""

import os
import signal
import time

import pandas as pd
import pytest
from conftest import write_tiny_yaml  # noqa: I001
from test_search_e2e import COLUMNS, sweep

from study.record import read_record
from study.search.cell_job import torchrun_cell, torchrun_command


def test_torchrun_command_is_standalone():
    cmd = torchrun_command(4, "c.yaml", python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                   "-m", "study.search.cell_job", "c.yaml"]


@pytest.fixture
def study_file(tmp_path):
    write_tiny_yaml(tmp_path / "tiny.yaml", ("train.steps=16", "train.checkpoint_every=4", "train.log_every=4",
                                             "bench.enabled=false", "eval.qualitative=0"))
    path = tmp_path / "study.yaml"
    path.write_text("name: ddp\nbase_config: tiny.yaml\nseeds: [0, 1]\nvariants:\n  B1236-AVE: {}\n")
    return path


def table(out):
    return pd.read_parquet(out / "ddp" / "runs.parquet")[COLUMNS].sort_values(["variant", "seed"]) \
        .reset_index(drop=True)


@pytest.mark.slow
def test_two_rank_cells_run_once_and_resume_to_the_same_numbers(study_file, tmp_path):
    clean = sweep(study_file, tmp_path / "clean", "--gpus-per-cell", "2")
    log, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, log
    assert "every cell ran exactly once" in log
    runs = tmp_path / "clean" / "ddp" / "runs"
    for cell in ("B1236-AVE__s0", "B1236-AVE__s1"):
        record = read_record(runs / cell / "record.json")
        assert record.status == "completed" and record.provenance["world_size"] == 2
        assert record.provenance["batch_size"] == 4 and record.provenance["batch_per_rank"] == 2
        assert (runs / cell / "cell.yaml").exists()

    out = tmp_path / "killed"
    victim = sweep(study_file, out, "--gpus-per-cell", "2")
    runs = out / "ddp" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline:  # the first cell has written a checkpoint and not finished
        if list(runs.glob("*/checkpoint.pt")) if runs.exists() else []:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the study never reached a mid-cell state")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    time.sleep(2.0)  # the ranks end with their agent (PR_SET_PDEATHSIG)
    rerun = sweep(study_file, out, "--gpus-per-cell", "2")
    log, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, log
    assert "re-queued 1" in log and "every cell ran exactly once" in log
    assert "resumed from" in "".join(p.read_text() for p in runs.glob("*/torchrun.log"))
    pd.testing.assert_frame_equal(table(out), table(tmp_path / "clean"))


@pytest.mark.slow
def test_a_two_rank_cell_is_pruned_through_files(tiny_cfg, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = tiny_cfg("train.steps=12", "train.eval_every=4", "bench.enabled=false", "eval.qualitative=0")
    asked = []

    def on_eval(step, metrics):
        asked.append((step, sorted(metrics)))
        return step >= 8

    record = torchrun_cell(2)(cfg, on_eval=on_eval)
    assert record.status == "pruned" and record.provenance["world_size"] == 2
    assert [step for step, _ in asked] == [4, 8] and "miou" in asked[0][1]
    assert [c["step"] for c in record.curves if "val_miou" in c] == [4, 8]  # stopped at step 8 of 12
