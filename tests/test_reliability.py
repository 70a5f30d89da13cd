"""Reliability: untrusted checkpoints stay data, a full or read-only results folder is one line, bad data fails
one cell and names the file."""

import contextlib
import errno
import os
import pickle
import random
import shutil
import subprocess
import threading

import numpy as np
import pytest
import torch
from helpers import fake_run
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from PIL import Image
from test_chaos import stand_in_workers

from study.atomic import INJECT, atomic_write_text, atomic_write_with, disk_error
from study.record import read_record
from study.search import outputs, queue, runner
from study.search.space import load_study
from study.search.storage import default_url, open_storage
from study.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class Payload:
    """Unpickling this would create a marker file: proof that the file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def draws():
    return random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1))


def test_checkpoint_rng_state_round_trips_through_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.randn()  # leave cached gaussians in both states
    save_checkpoint(tmp_path / "checkpoint.pt", model, opt, 7, "abc", {"curves": [{"step": 1, "loss": 0.5}]})
    expected = draws()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    set_rng_state(state["rng"])
    assert draws() == expected
    assert state["step"] == 7 and state["config_hash"] == "abc" and state["curves"] == [{"step": 1, "loss": 0.5}]


def test_older_checkpoint_with_numpy_rng_tuple_still_loads(tmp_path):
    np.random.seed(5), random.seed(5)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"model": {}, "optimizer": {}, "step": 2, "rng": old, "config_hash": "x"}, tmp_path / "c.pt")
    expected = draws()
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert draws() == expected


@pytest.mark.parametrize("where", ["top", "rng"])
def test_hostile_checkpoint_is_refused_in_one_line_and_never_run(tmp_path, where):
    marker = tmp_path / "pwned"
    state = {"model": {}, "optimizer": {}, "step": 1, "rng": rng_state(), "config_hash": "x"}
    if where == "top":
        state = Payload(marker)
    else:
        state["rng"]["python"] = Payload(marker)
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "checkpoint.pt")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "checkpoint.pt") in msg and "refused" in msg and "io.open" in msg
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))  # the payload is real: unpickled, it runs
    assert (tmp_path / "control").exists()


def test_hostile_checkpoint_in_a_cell_fails_that_cell_without_running(tiny_cfg, tmp_path):
    from study.config import config_hash
    from study.record import run_dir
    from study.run import run_one

    cfg = tiny_cfg("train.checkpoint_every=2", "bench.enabled=false")
    folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "optimizer": {}, "step": 1, "config_hash": config_hash(cfg), "rng": Payload(marker)},
               folder / "checkpoint.pt")
    record = run_one(cfg, log=lambda line: None)
    assert record.status == "failed" and "checkpoint.pt" in record.error and "refused" in record.error
    assert "\n" not in record.error and not marker.exists()


# --- a full or read-only results folder -------------------------------------------------------------------------

def test_atomic_writer_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old\n")
    monkeypatch.setenv(INJECT, "ENOSPC:record.json")  # fails after the temp file is written, before the rename
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "new\n" * 1000)
    assert err.value.errno == errno.ENOSPC and disk_error(err.value)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
    monkeypatch.delenv(INJECT)

    def half_then_full(tmp):  # the disk fills half-way through the write itself
        tmp.write_text("ne")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    with pytest.raises(OSError):
        atomic_write_with(target, half_then_full)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    with pytest.raises(OSError):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


@pytest.fixture
def grid_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {steps: 3}\nbench: {enabled: false}  # stand-in runs: no benchmark\n")
    path = tmp_path / "grid.yaml"
    path.write_text("name: grid\nbase_config: base.yaml\nseeds: [0, 1]\nmax_retries: 0\nvariants:\n"
                    "  FCN: {model.ppm: false}\n  B1: {model.bins: [1]}\n")
    return path


def test_full_disk_mid_study_is_one_line_and_the_rerun_resumes(grid_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv(INJECT, "ENOSPC:record.json")
    assert runner.main([str(grid_file), "--out", str(out)], run_fn=fake_run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(out / "grid" / "runs") in err and "No space left on device" in err and "re-run" in err
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("record.json"))
    spec = load_study(grid_file)
    study = queue.open_study(spec, open_storage(default_url(out / "grid")))
    assert [t.state for t in study.get_trials()].count(TrialState.RUNNING) == 0
    assert outputs.audit(study, spec) and not any("failed" in p for p in outputs.audit(study, spec))

    monkeypatch.delenv(INJECT)  # space is back: the same command finishes the study, nothing counted as failed
    assert runner.main([str(grid_file), "--out", str(out)], run_fn=fake_run) == 0
    assert "every cell ran exactly once" in capsys.readouterr().out
    assert len(list(out.rglob("record.json"))) == 4


@pytest.mark.slow  # worker processes
def test_full_disk_in_a_worker_process_stops_it_without_restarts(grid_file, tmp_path, monkeypatch, capfd):
    """--workers 2: the workers say why in one line each and are not restarted; the re-run resumes."""
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "local_workers", lambda args, url, n: stand_in_workers(grid_file, args, url, n))
    monkeypatch.setenv(INJECT, "ENOSPC:record.json")
    assert runner.main([str(grid_file), "--out", str(out), "--workers", "2"]) == 1
    captured = capfd.readouterr()
    assert captured.err.count("No space left on device") == 2 and "restarted as" not in captured.err
    assert "Traceback" not in captured.err and "not finished (re-run the command to resume)" in captured.err
    monkeypatch.delenv(INJECT)
    assert runner.main([str(grid_file), "--out", str(out), "--workers", "2"]) == 0
    assert "every cell ran exactly once" in capfd.readouterr().out


@contextlib.contextmanager
def read_only(folder):
    """A folder no one can write into: chmod for users, the immutable attribute for root (who ignores modes)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    else:
        pytest.skip("cannot make a folder read-only here")
    try:
        yield
    finally:
        undo()


def test_read_only_results_folder_is_one_line_and_the_rerun_resumes(grid_file, tmp_path, capsys):
    out = tmp_path / "out"
    runs = out / "grid" / "runs"
    runs.mkdir(parents=True)
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    with read_only(runs):
        assert runner.main([str(grid_file), "--out", str(out)], run_fn=fake_run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(runs) in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()} == before  # nothing half-written
    assert runner.main([str(grid_file), "--out", str(out)], run_fn=fake_run) == 0
    assert "every cell ran exactly once" in capsys.readouterr().out and len(list(runs.glob("*/record.json"))) == 4


# --- readers never block writers ------------------------------------------------------------------------------

@pytest.mark.slow  # worker processes
def test_report_and_dashboard_read_while_two_workers_write(grid_file, tmp_path, monkeypatch, capsys):
    from study.report.__main__ import main as report_main

    grid_file.write_text(grid_file.read_text().replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3]"))
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "local_workers", lambda args, url, n: stand_in_workers(grid_file, args, url, n))
    result = {}
    writer = threading.Thread(target=lambda: result.setdefault(
        "code", runner.main([str(grid_file), "--out", str(out), "--workers", "2"])))
    writer.start()
    journal = out / "grid" / "optuna.journal"
    renders, reads, seen = 0, 0, 0
    while writer.is_alive():
        if journal.exists():  # what optuna-dashboard does: open the journal and list the trials, no lock taken
            storage = JournalStorage(JournalFileBackend(str(journal)))  # Optuna's own, as the dashboard opens it
            studies = storage.get_all_studies()
            trials = storage.get_all_trials(studies[0]._study_id, deepcopy=False) if studies else []
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            assert done >= seen  # nothing seen once is lost
            seen, reads = done, reads + 1
        if not (out / "grid" / "study.json").exists():
            continue
        code = report_main([str(out / "grid"), "--out", str(tmp_path / "reports")])
        err = capsys.readouterr().err
        assert code == 0 or "no run records" in err, err  # never a half-read record or a lock error
        renders += code == 0
    writer.join()
    assert result["code"] == 0
    assert renders >= 2 and reads >= 2
    assert report_main([str(out / "grid"), "--out", str(tmp_path / "reports")]) == 0
    assert len(list((out / "grid" / "runs").glob("*/record.json"))) == 8


# --- bad data met during training -----------------------------------------------------------------------------

def folder_dataset(root, corrupt=None):
    """A folder-layout data set (3 classes, 32x32); `corrupt`: "image" truncates a training image after its
    header, "label" puts an unknown class id in a training mask. Both pass the header scan."""
    rng = np.random.default_rng(0)
    (root).mkdir(parents=True)
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    for split, n in (("train", 8), ("val", 4)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            mask = np.zeros((32, 32), np.uint8)
            mask[16:] = 1
            mask[20:, 20:] = 2
            Image.fromarray(image).save(root / split / "images" / f"{i:03d}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i:03d}.png")
    bad = root / "train" / ("images" if corrupt == "image" else "masks") / "005.png"
    if corrupt == "image":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 3])  # header intact, pixel data cut short
    elif corrupt == "label":
        mask = np.zeros((32, 32), np.uint8)
        mask[:4, :4] = 7
        Image.fromarray(mask).save(bad)
    return bad


@pytest.mark.slow  # trains a three-cell grid
@pytest.mark.parametrize("loader_workers", [0, 1])
def test_a_bad_label_stops_the_sweep_up_front_and_bad_data_during_training_fails_that_cell(tmp_path, capsys, loader_workers):
    from conftest import write_tiny_yaml

    from study.report.render import render_study

    good, bad_image, bad_label = (folder_dataset(tmp_path / name, corrupt) for name, corrupt in
                                  (("good", None), ("badimg", "image"), ("badlabel", "label")))
    write_tiny_yaml(tmp_path / "tiny.yaml", ("data.name=folder", f"data.root={tmp_path / 'good'}",
                                             "bench.enabled=false", "eval.qualitative=0", "train.steps=4", f"data.workers={loader_workers}"))
    study_file = tmp_path / "study.yaml"
    # a label outside the classes is found before any cell runs (the sweep reads a folder data set's masks first)
    study_file.write_text(f"name: bad\nbase_config: tiny.yaml\nseeds: [0]\nmax_retries: 0\nvariants:\n"
                          f"  GOOD: {{}}\n  BADLABEL: {{data.root: {tmp_path / 'badlabel'}}}\n")
    out = tmp_path / "out"
    assert runner.main([str(study_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(bad_label) in err and "[7]" in err
    assert not (out / "bad").exists()
    # an image that decodes badly only past its header is met during training: that cell fails, the study goes on
    study_file.write_text(f"name: bad\nbase_config: tiny.yaml\nseeds: [0]\nmax_retries: 0\nvariants:\n"
                          f"  GOOD: {{}}\n  BADIMG: {{data.root: {tmp_path / 'badimg'}}}\n")
    assert runner.main([str(study_file), "--out", str(out)]) == 1  # the study finished; one cell failed
    log = capsys.readouterr()
    records = {p.parent.name: read_record(p) for p in (out / "bad" / "runs").glob("*/record.json")}
    assert records["GOOD__s0"].status == "completed"
    for cell, path in (("BADIMG__s0", bad_image),):
        assert records[cell].status == "failed" and str(path) in records[cell].error, records[cell].error
        assert "\n" not in records[cell].error
        assert f"{cell}: failed 1 times" in log.err and str(path) in log.err
    index = (render_study(out / "bad", tmp_path / "reports") / "index.md").read_text()
    failures = index[index.index("Failed and pruned runs"):]
    assert str(bad_image) in failures and "GOOD" not in failures


def test_storage_password_stays_out_of_messages_and_results(grid_file, tmp_path, capsys):
    url = "postgresql://study:s3cret-pw@127.0.0.1:1/nowhere"  # nothing listens on port 1: fails at once
    assert runner.main([str(grid_file), "--out", str(tmp_path / "out"), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "s3cret" not in err and "study@127.0.0.1" in err
    written = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not any(b"s3cret" in data for data in written)
