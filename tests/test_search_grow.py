"""Studies that grow: more seeds, variants or search trials by editing the study file (or --seeds) and re-running
the same command train only the new cells, each exactly once; a refused command leaves the storage as it was; and
studies written by earlier versions (tests/data/*.journal, written by commit 4d5d93b) keep working."""

import shutil
from pathlib import Path

import pytest
from helpers import fake_run
from optuna.trial import TrialState

from study.search import outputs, queue, runner
from study.search.space import load_study
from study.search.storage import JOURNAL, default_url, open_storage

DATA = Path(__file__).parent / "data"
BASE = "train: {steps: 3}\nbench: {enabled: false}\n"  # the base config of the old journals: same config hashes
VARIANTS = {"FCN": "{model.ppm: false}", "B1-AVE": "{model.bins: [1]}", "B2-AVE": "{model.bins: [2]}"}
SPACE = ("    train.lr: {type: float, low: 0.001, high: 0.1, log: true}\n"
         "    model.bins: {type: categorical, choices: [[1], [1, 2, 3, 6]]}\n")


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every sweep runs its one worker in this process


class Trainer:
    """A run_fn that counts the cells it trains."""

    def __init__(self):
        self.cells: list[str] = []

    def __call__(self, cfg, on_eval=None):
        self.cells.append(f"{cfg.run.variant}__s{cfg.run.seed}")
        return fake_run(cfg, on_eval)


def grid_file(folder: Path, variants, seeds, name="grow", changed: str = "") -> Path:
    (folder / "base.yaml").write_text(BASE)
    lines = "".join(f"  {v}: {VARIANTS[v] if v != changed else '{model.bins: [3]}'}\n" for v in variants)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nbase_config: base.yaml\nseeds: {list(seeds)}\nvariants:\n{lines}")
    return path


def search_file(folder: Path, n_trials: int, space: str = SPACE, name="grow_search") -> Path:
    (folder / "base.yaml").write_text(BASE)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nbase_config: base.yaml\nsearch:\n  n_trials: {n_trials}\n  space:\n{space}")
    return path


def sweep(path: Path, out: Path, *extra: str, storage: str | None = None) -> tuple[int, list[str]]:
    trainer = Trainer()
    code = runner.main([str(path), "--out", str(out), *extra, *(["--storage", storage] if storage else [])],
                       run_fn=trainer)
    return code, sorted(trainer.cells)


def completed_once(url: str, spec) -> list[str]:
    """The cells completed in the storage; fails if one completed twice."""
    study = queue.open_study(spec, open_storage(url))
    done = [t.user_attrs["cell"] for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == len(set(done)), done
    assert outputs.audit(study, spec) == []
    return sorted(done)


def test_a_grid_grows_by_seeds_then_by_variants(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep(grid_file(tmp_path, ["FCN", "B1-AVE"], [0]), out) == (0, ["B1-AVE__s0", "FCN__s0"])
    assert sweep(grid_file(tmp_path, ["FCN", "B1-AVE"], [0, 1]), out) == (0, ["B1-AVE__s1", "FCN__s1"])
    path = grid_file(tmp_path, ["FCN", "B1-AVE"], [0, 1])
    assert sweep(path, out, "--seeds", "0,1,2") == (0, ["B1-AVE__s2", "FCN__s2"])
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1, 2])
    assert sweep(path, out) == (0, ["B2-AVE__s0", "B2-AVE__s1", "B2-AVE__s2"])
    assert sweep(grid_file(tmp_path, ["FCN"], [0]), out) == (0, [])  # a smaller file: its cells are done
    spec = load_study(path)
    assert completed_once(default_url(out / "grow"), spec) == sorted(f"{v}__s{s}" for v in VARIANTS
                                                                      for s in range(3))
    assert "every cell ran exactly once" in capsys.readouterr().out


def test_a_refused_command_leaves_the_storage_as_it_was(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep(grid_file(tmp_path, ["FCN", "B1-AVE"], [0]), out)[0] == 0
    journal = out / "grow" / JOURNAL
    before = journal.read_bytes()
    capsys.readouterr()
    # a new seed and a new variant, but B1-AVE changed: refused in one line, nothing enqueued
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1], changed="B1-AVE")
    assert sweep(path, out) == (2, [])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cell B1-AVE__s0 ran with another config" in err
    assert journal.read_bytes() == before
    # a bad override for the new cells: refused before anything is enqueued
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1])
    assert sweep(path, out, "model.pool=mean") == (2, [])
    assert journal.read_bytes() == before
    assert sweep(path, out) == (0, ["B1-AVE__s1", "B2-AVE__s0", "B2-AVE__s1", "FCN__s1"])


def test_a_search_grows_by_trials_and_refuses_a_changed_space(tmp_path, capsys):
    out = tmp_path / "out"
    code, cells = sweep(search_file(tmp_path, 3), out)
    assert code == 0 and cells == ["trial-0000__s0", "trial-0001__s0", "trial-0002__s0"]
    code, cells = sweep(search_file(tmp_path, 5), out)
    assert code == 0 and cells == ["trial-0003__s0", "trial-0004__s0"]
    study = queue.open_study(load_study(search_file(tmp_path, 5)), open_storage(default_url(out / "grow_search")))
    assert [queue.cells_left(study, load_study(search_file(tmp_path, n))) for n in (7, 3)] == [(2, 7), (0, 3)]
    journal = out / "grow_search" / JOURNAL
    before = journal.read_bytes()
    capsys.readouterr()
    wider = SPACE.replace("[[1], [1, 2, 3, 6]]", "[[1], [1, 2], [1, 2, 3, 6]]")
    assert sweep(search_file(tmp_path, 6, wider), out) == (2, [])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "search.space.model.bins changed" in err
    assert journal.read_bytes() == before


def old_study(name: str, out: Path) -> str:
    """A copy of a journal written by commit 4d5d93b, where today's sweep looks for it."""
    (out / name).mkdir(parents=True)
    shutil.copy(DATA / f"{name}.journal", out / name / JOURNAL)
    return default_url(out / name)


def test_an_old_grid_left_broken_by_growing_runs_again(tmp_path):
    """The old journal: FCN and B1-AVE at seed 0 finished; then adding seed 1 and then B2-AVE crashed the worker
    ("dynamic value space"), and the finished grid itself crashed after ("'B2-AVE' not in ('FCN', 'B1-AVE')"),
    leaving FCN__s1 completed, B1-AVE__s1 waiting and B2-AVE__s0 running with a dead worker."""
    out = tmp_path / "out"
    url = old_study("old_grid", out)
    assert sweep(grid_file(tmp_path, ["FCN", "B1-AVE"], [0], name="old_grid"), out) == (0, [])
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1], name="old_grid")
    assert sweep(path, out) == (0, ["B1-AVE__s1", "B2-AVE__s0", "B2-AVE__s1"])
    assert completed_once(url, load_study(path)) == sorted(f"{v}__s{s}" for v in VARIANTS for s in (0, 1))
    assert sweep(grid_file(tmp_path, ["FCN", "B1-AVE"], [0], name="old_grid", changed="FCN"), out)[0] == 2


def test_an_old_search_grows_by_trials(tmp_path):
    out = tmp_path / "out"
    url = old_study("old_search", out)
    code, cells = sweep(search_file(tmp_path, 5, name="old_search"), out)
    assert code == 0 and cells == ["trial-0003__s0", "trial-0004__s0"]
    assert len(completed_once(url, load_study(search_file(tmp_path, 5, name="old_search")))) == 5


def test_a_study_resumes_from_shipped_records_alone(tmp_path):
    """A fresh machine with only the committed records (reports/_inputs/<study>) continues the study: the cells
    they hold are not trained again; a record of another config is not taken."""
    import shutil

    from study.record import completed_record

    path = grid_file(tmp_path, ["FCN", "B1-AVE"], [0, 1])
    assert sweep(path, tmp_path / "first")[0] == 0
    shipped = tmp_path / "shipped"
    shutil.copytree(tmp_path / "first" / "grow" / "runs", shipped / "runs",
                    ignore=shutil.ignore_patterns("*.pt", "checkpoint*"))
    shutil.rmtree(shipped / "runs" / "B1-AVE__s1")  # not finished when the records were committed
    (shipped / "runs" / "FCN__s0" / "qualitative").mkdir()
    (shipped / "runs" / "FCN__s0" / "qualitative" / "000.png").write_bytes(b"strip")

    class Resuming(Trainer):  # as run_one: a completed record of the cell's config is returned, not retrained
        def __call__(self, cfg, on_eval=None):
            from study.config import config_hash
            from study.record import run_dir

            done = completed_record(run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed),
                                    config_hash(cfg))
            return done if done is not None else super().__call__(cfg, on_eval)

    trainer = Resuming()
    code = runner.main([str(path), "--out", str(tmp_path / "fresh"), "--resume-from", str(shipped)], run_fn=trainer)
    assert code == 0 and trainer.cells == ["B1-AVE__s1"]
    assert sorted(p.name for p in (tmp_path / "fresh" / "grow" / "runs").iterdir()) == \
        ["B1-AVE__s0", "B1-AVE__s1", "FCN__s0", "FCN__s1"]
    assert (tmp_path / "fresh" / "grow" / "runs" / "FCN__s0" / "qualitative" / "000.png").read_bytes() == b"strip"
    (tmp_path / "changed").mkdir()
    other = grid_file(tmp_path / "changed", ["FCN"], [0], name="grow", changed="FCN")  # FCN's config changed: its old record is not taken
    trainer = Resuming()
    assert runner.main([str(other), "--out", str(tmp_path / "third"), "--resume-from", str(shipped)],
                       run_fn=trainer) == 0
    assert trainer.cells == ["FCN__s0"]
    assert runner.main([str(path), "--out", str(tmp_path / "x"), "--resume-from", str(tmp_path / "nothing")]) == 2
