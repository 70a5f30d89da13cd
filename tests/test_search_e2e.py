"""The real command: a worker killed with SIGKILL mid-study, the command re-run, the same table as a clean run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_tiny_yaml  # noqa: I001

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["variant", "seed", "status", "miou", "miou_present", "pixel_acc", "mean_acc", "config_hash"]

pytestmark = pytest.mark.slow  # end-to-end sweeps with real training


@pytest.fixture
def study_file(tmp_path):
    write_tiny_yaml(tmp_path / "tiny.yaml", ("train.steps=24", "train.checkpoint_every=4", "train.log_every=4",
                                             "bench.enabled=false", "eval.qualitative=1"))
    path = tmp_path / "study.yaml"
    path.write_text("name: e2e\nbase_config: tiny.yaml\nbaseline: FCN\nseeds: [0, 1]\nvariants:\n"
                    "  FCN: {model.ppm: false}\n  B1236-AVE: {model.bins: [1, 2, 3, 6]}\n")
    return path


def sweep(study_file: Path, out: Path, *extra: str) -> subprocess.Popen:
    """The sweep command as a user types it, with one local worker unless `extra` says otherwise (the machine's
    own choice is tested in test_placement.py)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    workers = () if "--workers" in extra else ("--workers", "1")
    return subprocess.Popen([sys.executable, "-m", "study", "sweep", str(study_file), "--out", str(out), *workers,
                             *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "e2e" / "runs.parquet")[COLUMNS].sort_values(["variant", "seed"]) \
        .reset_index(drop=True)


def test_killed_worker_then_rerun_equals_an_uninterrupted_study(study_file, tmp_path):
    clean = sweep(study_file, tmp_path / "clean")
    out_clean, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, out_clean
    assert "every cell ran exactly once" in out_clean

    out = tmp_path / "killed"
    victim = sweep(study_file, out)
    runs = out / "e2e" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until one cell is done and another is mid-way (has a checkpoint)
        done = list(runs.glob("*/record.json")) if runs.exists() else []
        mid = list(runs.glob("*/checkpoint.pt")) if runs.exists() else []
        if done and mid:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the study never reached a mid-trial state")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL

    rerun = sweep(study_file, out)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    assert "re-queued 1" in log and "resumed from" in log
    assert "every cell ran exactly once" in log
    pd.testing.assert_frame_equal(table(out), table(tmp_path / "clean"))
    assert len(table(out)) == 4 and (table(out)["status"] == "completed").all()


def test_two_local_workers_and_a_failing_cell(study_file, tmp_path):
    text = study_file.read_text() + "  BAD: {train.lr: 1.0e+30}\n"
    study_file.write_text(text.replace("max_retries", "") + "max_retries: 0\n")
    proc = sweep(study_file, tmp_path / "out", "--workers", "2")
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, log  # the study finished, one cell failed and is reported
    assert "BAD__s0: failed 1 times: non-finite loss" in log
    df = pd.read_parquet(tmp_path / "out" / "e2e" / "runs.parquet")
    assert len(df) == 6 and set(df[df["status"] == "failed"]["variant"]) == {"BAD"}
    assert (df[df["variant"] != "BAD"]["status"] == "completed").all()
