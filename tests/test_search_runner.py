"""The study runner with a stand-in for run_one: claiming, exactly-once, retries, dead workers, budgets."""

import multiprocessing as mp
import os
import socket
import textwrap
import time

import pytest
from conftest import STAND_IN_BASE
from helpers import fake_run, slow_fake_run  # noqa: I001
from optuna.trial import TrialState

from study.config import ConfigError
from study.record import run_dir, write_record
from study.search import outputs, queue, worker
from study.search.space import cell_config, grid_cells, load_study
from study.search.storage import default_url, open_storage, study_lock


@pytest.fixture
def study_file(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "grid.yaml"
    path.write_text(textwrap.dedent("""
        name: grid
        base_config: base.yaml
        baseline: FCN
        seeds: [0, 1]
        max_retries: 1
        variants:
          FCN: {model.ppm: false}
          B1-AVE: {model.bins: [1], model.pool: avg}
          B1236-MAX: {model.bins: [1, 2, 3, 6], model.pool: max}
    """))
    return path


def run_worker(spec_path, out, url):
    spec = load_study(spec_path)
    return worker.work(spec, url, str(out), (), slow_fake_run)


def setup(spec, out):
    url = default_url(out / spec.name)
    storage = open_storage(url)
    study = queue.open_study(spec, storage)
    with study_lock(storage, url, spec.name):
        counts = queue.prepare(study, spec, str(out), ())
    return study, url, counts


def test_grid_expansion_and_cell_configs(study_file, tmp_path):
    spec = load_study(study_file)
    # seed by seed: a study stopped part-way holds whole seeds
    assert grid_cells(spec) == [("FCN", 0), ("B1-AVE", 0), ("B1236-MAX", 0), ("FCN", 1), ("B1-AVE", 1),
                                ("B1236-MAX", 1)]
    cfg = cell_config(spec, "B1236-MAX", 1, out_dir="out", cli_overrides=("train.lr=0.5",))
    assert cfg.model.bins == (1, 2, 3, 6) and cfg.model.pool == "max" and cfg.train.steps == 3
    assert cfg.train.lr == 0.5 and cfg.run.seed == 1 and cfg.run.variant == "B1236-MAX" and cfg.run.study == "grid"
    assert cell_config(spec, "FCN", 0).model.pyramid_bins == ()


@pytest.mark.parametrize("text, key", [
    ("name: x\nbase_config: base.yaml\nvariants: {A: {model.pool: mean}}\n", "variant A: model.pool"),
    ("name: x\nbase_config: base.yaml\nvariants: {A: {}}\nbaseline: B\n", "baseline"),
    ("name: x\nbase_config: missing.yaml\nvariants: {A: {}}\n", "base_config"),
    ("name: x\nbase_config: base.yaml\nseeds: [0, 0]\nvariants: {A: {}}\n", "seeds"),
    ("name: x\nbase_config: base.yaml\n", "variants"),
    ("name: x\nbase_config: base.yaml\nvariants: {A: {}}\ncolour: red\n", "colour"),
    ("name: x\nbase_config: base.yaml\nsearch: {space: {train.lr: {type: float, low: 1, high: 0}}}\n",
     "search.space.train.lr"),
])
def test_bad_study_files_name_the_key(tmp_path, text, key):
    (tmp_path / "base.yaml").write_text("{}\n")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_prepare_is_idempotent(study_file, tmp_path):
    spec = load_study(study_file)
    study, url, counts = setup(spec, tmp_path / "out")
    assert counts == {"requeued": 0, "enqueued": 6}
    study, url, counts = setup(spec, tmp_path / "out")
    assert counts == {"requeued": 0, "enqueued": 0}
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 6


@pytest.mark.slow  # worker processes
def test_two_worker_processes_run_every_cell_exactly_once(study_file, tmp_path):
    spec = load_study(study_file)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=run_worker, args=(study_file, out, url)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    trials = study.get_trials()
    assert sorted(t.user_attrs["cell"] for t in trials) == sorted(f"{v}__s{s}" for v, s in grid_cells(spec))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes took work
    assert outputs.audit(study, spec) == []


def test_failed_cell_is_retried_then_reported_and_the_study_goes_on(study_file, tmp_path):
    spec = load_study(study_file)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    cli = ("train.lr=2.0",)  # every cell "diverges" in the fake
    ran = worker.work(spec, url, str(out), cli, fake_run)
    assert ran == 12  # 6 cells x (1 + max_retries)
    problems = outputs.audit(study, spec)
    assert len(problems) == 6 and all("failed 2 times: non-finite loss" in p for p in problems)
    # a re-run does not retry exhausted cells, --retry-failed does
    with study_lock(study._storage, url, spec.name):
        assert queue.prepare(study, spec, str(out), cli)["enqueued"] == 0
        assert queue.prepare(study, spec, str(out), cli, retry_failed=True)["enqueued"] == 6


def test_dead_worker_is_requeued_with_same_cell(study_file, tmp_path):
    spec = load_study(study_file)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    trial = queue.claim(study, spec, url)
    dead = mp.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()  # a pid that no longer exists on this host
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    cell = trial.user_attrs["cell"]
    with study_lock(study._storage, url, spec.name):
        counts = queue.prepare(study, spec, str(out), ())
    assert counts["requeued"] == 1
    lost = study.get_trials()[trial.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["lost"]
    assert worker.work(spec, url, str(out), (), fake_run) == 6
    assert outputs.audit(study, spec) == []
    done = [t for t in study.get_trials() if t.user_attrs.get("cell") == cell and t.state == TrialState.COMPLETE]
    assert len(done) == 1


def test_live_worker_on_this_host_is_not_requeued(study_file, tmp_path):
    spec = load_study(study_file)
    study, url, _ = setup(spec, tmp_path / "out")
    trial = queue.claim(study, spec, url)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    with study_lock(study._storage, url, spec.name):
        assert queue.prepare(study, spec, str(tmp_path / "out"), ())["requeued"] == 0


def test_changed_config_is_refused(study_file, tmp_path):
    spec = load_study(study_file)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    worker.work(spec, url, str(out), (), fake_run)
    with pytest.raises(queue.StudyError, match="ran with another config"):
        with study_lock(study._storage, url, spec.name):
            queue.prepare(study, spec, str(out), ("train.steps=5",))


def test_search_budget_is_a_total_over_workers(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent("""
        name: srch
        base_config: base.yaml
        seeds: [0]
        search:
          sampler: tpe
          pruner: median
          n_trials: 5
          space:
            train.lr: {type: float, low: 0.001, high: 0.1, log: true}
            model.bins: {type: categorical, choices: [[1], [1, 2, 3, 6]]}
    """))
    spec = load_study(path)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    assert worker.work(spec, url, str(out), (), fake_run) == 5
    assert worker.work(spec, url, str(out), (), fake_run) == 0  # a second worker finds the budget spent
    trials = study.get_trials()
    assert len(trials) == 5
    assert {t.params["model.bins"] for t in trials} <= {"[1]", "[1, 2, 3, 6]"}
    rec = trials[0].user_attrs["record"]
    assert rec["config"]["model"]["bins"] in ([1], [1, 2, 3, 6])
    assert all(0.001 <= t.params["train.lr"] <= 0.1 for t in trials)


def test_two_search_workers_never_ask_for_the_same_point(tmp_path):
    """Each worker builds its own sampler; seeded alike, TPE's random start-up trials came out in pairs."""
    from study.search import queue

    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "search.yaml"
    path.write_text("name: pairs\nbase_config: base.yaml\nsearch:\n  n_trials: 6\n  space:\n"
                    "    train.lr: {type: float, low: 0.001, high: 0.1, log: true}\n")
    spec = load_study(path)
    out = tmp_path / "out"
    _, url, _ = setup(spec, out)
    # two workers, each with its own study object and sampler, asking in turn (as two processes do)
    a, b = (queue.open_study(spec, open_storage(url)) for _ in range(2))
    lrs = []
    for study in (a, b, a, b, a, b):
        trial = queue.claim(study, spec, url)
        lrs.append(trial.suggest_float("train.lr", 0.001, 0.1, log=True))
    assert len(set(lrs)) == 6


def test_records_are_exported_from_the_storage(study_file, tmp_path):
    spec = load_study(study_file)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    worker.work(spec, url, str(out), (), fake_run)
    other = tmp_path / "other-machine"
    assert outputs.export_records(study, str(other), spec) == 6
    assert (run_dir(other, "grid", "FCN", 1) / "record.json").exists()
    assert outputs.export_records(study, str(other), spec) == 0


def test_progress_line(study_file, tmp_path):
    spec = load_study(study_file)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    assert "0/6 done" in outputs.progress(study, spec, time.time(), 1)
    worker.work(spec, url, str(out), (), fake_run)
    line = outputs.progress(study, spec, time.time(), 1)
    assert "6/6 done (6 completed, 0 failed, 0 pruned), 0 running" in line and "best miou" in line


def test_a_finished_study_pointed_at_other_data_is_refused(tmp_path):
    import dataclasses
    import shutil

    import numpy as np
    from PIL import Image
    from test_features import write_folder

    from study.data.fingerprint import _memo, data_fingerprint

    data = write_folder(tmp_path / "data")
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE + f"data: {{name: folder, root: {data}}}\n")
    path = tmp_path / "grid.yaml"
    path.write_text("name: grid\nbase_config: base.yaml\nseeds: [0]\nvariants:\n  FCN: {model.ppm: false}\n")

    def run_with_fingerprint(cfg, on_eval=None):
        rec = fake_run(cfg, on_eval)
        fp = data_fingerprint(cfg.data, (cfg.data.train_split, cfg.data.val_split))
        rec = dataclasses.replace(rec, provenance={"data_fingerprint": fp})
        write_record(rec, run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed))
        return rec

    spec = load_study(path)
    out = tmp_path / "out"
    study, url, _ = setup(spec, out)
    worker.work(spec, url, str(out), (), run_with_fingerprint)
    shutil.copytree(data, tmp_path / "copy")
    with study_lock(study._storage, url, spec.name):  # the same files elsewhere: the same data
        queue.prepare(study, spec, str(out), (f"data.root={tmp_path / 'copy'}",))
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "copy" / "val" / "images" / "1.png")
    _memo.clear()
    before = sorted(p for p in out.rglob("*") if p.is_file())
    with pytest.raises(queue.StudyError, match=r"cell FCN__s0 finished on other data \(fingerprint folder:"):
        with study_lock(study._storage, url, spec.name):
            queue.prepare(study, spec, str(out), (f"data.root={tmp_path / 'copy'}",))
    assert sorted(p for p in out.rglob("*") if p.is_file()) == before
