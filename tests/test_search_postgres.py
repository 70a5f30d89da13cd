"""Two worker processes split one study through a shared PostgreSQL storage (CI starts a server on loopback).

Set STUDY_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:54329/postgres) to run it; it skips otherwise.
"""

import multiprocessing as mp
import os
import textwrap
import time
import uuid

import pytest
from conftest import STAND_IN_BASE
from helpers import slow_fake_run
from optuna.trial import TrialState

from study.search import outputs, queue, worker
from study.search.space import grid_cells, load_study
from study.search.storage import open_storage, study_lock

URL = os.environ.get("STUDY_TEST_POSTGRES_URL", "")


def reachable(url: str) -> bool:
    if not url:
        return False
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(url).connect():
            return True
    except Exception:  # noqa: BLE001
        return False


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not reachable(URL), reason="no PostgreSQL server (set STUDY_TEST_POSTGRES_URL)")]


def run_worker(path, out):
    spec = load_study(path)
    worker.work(spec, URL, str(out / "machine"), (), slow_fake_run)


def test_two_workers_share_a_postgres_study(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "pg.yaml"
    name = f"pg_{uuid.uuid4().hex[:10]}"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        base_config: base.yaml
        seeds: [0, 1, 2]
        variants:
          FCN: {{model.ppm: false}}
          B1236-AVE: {{model.bins: [1, 2, 3, 6]}}
    """))
    spec = load_study(path)
    storage = open_storage(URL)
    study = queue.open_study(spec, storage)
    for _ in range(2):  # setup twice, as two machines starting the same command would
        with study_lock(storage, URL, spec.name):
            queue.prepare(study, spec, str(tmp_path), ())
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=run_worker, args=(path, tmp_path / f"m{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    trials = study.get_trials()
    assert len(trials) == len(grid_cells(spec)) == 6
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert outputs.audit(study, spec) == []
    # each machine wrote only its own records; either can materialise the whole study from the storage
    assert outputs.export_records(study, str(tmp_path / "m0" / "machine"), spec) > 0
    assert len(list((tmp_path / "m0" / "machine" / name / "runs").iterdir())) == 6


def test_a_postgres_study_grows_and_an_old_one_keeps_working(tmp_path, monkeypatch, capsys):
    """Seeds and a variant added to a finished grid train only the new cells; a refused command writes nothing;
    a study written by commit 4d5d93b (copied from its journal) grows too."""
    import optuna
    from test_search_grow import DATA, completed_once, grid_file, sweep

    from study.search.storage import open_journal

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    name = f"pg_grow_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    assert sweep(grid_file(tmp_path, ["FCN", "B1-AVE"], [0], name=name), out, storage=URL) \
        == (0, ["B1-AVE__s0", "FCN__s0"])
    study = optuna.load_study(study_name=name, storage=open_storage(URL))
    before = len(study.get_trials())
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1], name=name, changed="FCN")
    assert sweep(path, out, storage=URL) == (2, [])
    assert len(study.get_trials()) == before and "FCN__s0 ran with another config" in capsys.readouterr().err
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1], name=name)
    assert sweep(path, out, storage=URL) == (0, ["B1-AVE__s1", "B2-AVE__s0", "B2-AVE__s1", "FCN__s1"])
    assert sweep(path, out, "--seeds", "0,1,2", storage=URL) == (0, ["B1-AVE__s2", "B2-AVE__s2", "FCN__s2"])
    assert len(completed_once(URL, load_study(path))) == 9

    old = f"pg_old_{uuid.uuid4().hex[:8]}"
    optuna.copy_study(from_study_name="old_grid", from_storage=open_journal(copy_journal(DATA / "old_grid.journal",
                                                                                         tmp_path)),
                      to_storage=open_storage(URL), to_study_name=old)
    path = grid_file(tmp_path, ["FCN", "B1-AVE", "B2-AVE"], [0, 1], name=old)
    assert sweep(path, out, storage=URL) == (0, ["B1-AVE__s1", "B2-AVE__s0", "B2-AVE__s1"])
    assert len(completed_once(URL, load_study(path))) == 6


def copy_journal(src, folder):
    """A writable copy of a checked-in journal (opening one repairs and locks it in place)."""
    import shutil

    dst = folder / src.name
    shutil.copy(src, dst)
    return dst


def test_workers_show_no_password_in_ps(tmp_path, monkeypatch):
    """Two real worker processes on a PostgreSQL URL with a password: it is on no command line (`ps`), and the
    workers still reach the study (they leave no journal of their own behind)."""
    import subprocess
    import threading

    import sqlalchemy
    from test_search_grow import grid_file, sweep

    from study.search import runner

    parsed = sqlalchemy.engine.make_url(URL)
    url = URL if parsed.password else parsed.set(password="pw-s3cret").render_as_string(hide_password=False)
    if not reachable(url):
        pytest.skip("the server checks passwords: give STUDY_TEST_POSTGRES_URL with one")
    password = sqlalchemy.engine.make_url(url).password
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    name = f"pg_pw_{uuid.uuid4().hex[:8]}"
    path, out = grid_file(tmp_path, ["FCN"], [0], name=name), tmp_path / "out"
    assert sweep(path, out, storage=url)[0] == 0  # finished: the workers below find nothing to train
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
            seen.extend(line for line in ps.splitlines() if "--worker-only" in line and name in line)
            time.sleep(0.02)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        code = runner.main([str(path), "--out", str(out), "--workers", "2", "--storage", url])
    finally:
        stop.set()
        thread.join()
    assert code == 0 and seen and not any(password in line for line in seen)
    assert not (out / name / "optuna.journal").exists()
