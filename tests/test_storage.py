"""The study's journal: a torn last line is moved aside, other damage is one line, a killed appender frees the lock."""

import multiprocessing as mp
import os
import signal
import textwrap
import time

import pytest
from conftest import STAND_IN_BASE
from helpers import fake_run
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from study.search import outputs, queue, runner, worker
from study.search.space import load_study
from study.search.storage import JOURNAL, FlockLock, StorageError, default_url, open_storage, study_lock


@pytest.fixture
def study_file(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "grid.yaml"
    path.write_text(textwrap.dedent("""
        name: grid
        base_config: base.yaml
        seeds: [0, 1]
        variants:
          FCN: {model.ppm: false}
          B1: {model.bins: [1]}
    """))
    return path


def half_run(study_file, out):
    """A study with two of its four cells done; returns (spec, url, journal)."""
    spec = load_study(study_file)
    url = default_url(out / spec.name)
    storage = open_storage(url)
    study = queue.open_study(spec, storage)
    with study_lock(storage, url, spec.name):
        queue.prepare(study, spec, str(out), ())
    for _ in range(2):
        worker.run_trial(study, queue.claim(study, spec, url), spec, url, str(out), (), fake_run)
    return spec, url, out / spec.name / JOURNAL


@pytest.mark.parametrize("fragment", [b'{"op_code": 5, "worker_id": "ab', b"\0" * 300, b'{"op_code": 5, "wor\n'])
def test_torn_last_line_is_moved_aside_and_the_study_goes_on(study_file, tmp_path, capsys, fragment):
    spec, url, journal = half_run(study_file, tmp_path / "out")
    whole = journal.read_bytes()
    with open(journal, "ab") as f:
        f.write(fragment)
    capsys.readouterr()
    study = queue.open_study(spec, open_storage(url))
    err = capsys.readouterr().err
    side = journal.with_name(JOURNAL + ".torn-1")
    assert err.count("\n") == 1 and str(journal) in err and str(side) in err and "cut short" in err
    assert side.read_bytes() == fragment and journal.read_bytes().startswith(whole)  # nothing acknowledged is lost
    assert sum(t.state == TrialState.COMPLETE for t in study.get_trials()) == 2
    assert worker.work(spec, url, str(tmp_path / "out"), (), fake_run) == 2
    assert outputs.audit(queue.open_study(spec, open_storage(url)), spec) == []
    with open(journal, "ab") as f:  # a second torn tail gets the next side file
        f.write(b'{"op')
    open_storage(url)
    assert journal.with_name(JOURNAL + ".torn-2").read_bytes() == b'{"op'


def test_whole_journal_is_left_alone(study_file, tmp_path, capsys):
    spec, url, journal = half_run(study_file, tmp_path / "out")
    before = journal.read_bytes()
    capsys.readouterr()
    open_storage(url)
    assert journal.read_bytes() == before and capsys.readouterr().err == ""
    assert not list(journal.parent.glob("*.torn-*"))


def test_damage_in_the_middle_is_one_line_naming_the_file(study_file, tmp_path, capsys):
    spec, url, journal = half_run(study_file, tmp_path / "out")
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"op_code": 5, "wor\n'
    journal.write_bytes(b"".join(lines))
    with pytest.raises(StorageError) as err:
        open_storage(url)
    msg = str(err.value)
    assert "\n" not in msg and str(journal) in msg and "line 4" in msg and "move it aside" in msg
    # the command: `error: ...` and exit 2, no traceback
    capsys.readouterr()
    assert runner.main([str(study_file), "--out", str(tmp_path / "out")], run_fn=fake_run) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def _append_forever(journal, ready):
    lock = FlockLock(journal)
    lock.acquire()
    ready.set()
    time.sleep(60)


def test_a_killed_appender_does_not_hold_the_lock(tmp_path):
    journal = tmp_path / JOURNAL
    journal.touch()
    ready = mp.get_context("fork").Event()
    p = mp.get_context("fork").Process(target=_append_forever, args=(journal, ready))
    p.start()
    assert ready.wait(10)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    t0 = time.monotonic()
    lock = FlockLock(journal)
    lock.acquire()
    lock.release()
    assert time.monotonic() - t0 < 1.0


def test_readers_see_only_whole_lines(study_file, tmp_path):
    """An append in flight (no newline yet) is invisible to a reader that opens the journal meanwhile."""
    spec, url, journal = half_run(study_file, tmp_path / "out")
    study = queue.open_study(spec, open_storage(url))
    n = len(study.get_trials())
    with open(journal, "ab") as f:  # a writer half-way through its line, holding the append lock
        f.write(b'{"op_code": 0, "worker_id": "x", "study_name": "other", "directions": [1]}'[:20])
        f.flush()
        reader = JournalStorage(JournalFileBackend(str(journal), lock_obj=FlockLock(journal)))
        assert len(queue.open_study(spec, reader).get_trials()) == n
