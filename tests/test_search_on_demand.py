"""Seeds on demand in a sweep: rounds add seeds only to the variants of undecided claims, every cell runs exactly
once, re-running resumes, and a bad `seeds_on_demand` is a one-line error. The runs are stand-ins whose mIoU is set
here: the pyramid variants are 20 points above the FCN (decided at the first look) and equal to each other."""

import errno
import json
from pathlib import Path

import pytest
from conftest import STAND_IN_BASE
from helpers import stand_in_record
from optuna.trial import TrialState

from study.config import ConfigError
from study.record import run_dir, write_record
from study.results.claims import judge_claims
from study.results.sequential import SequentialPlan
from study.results.table import read_table
from study.search import outputs, queue, runner
from study.search.rounds import start_cells
from study.search.space import load_study
from study.search.storage import default_url, open_storage

PLAN = "{first: 3, step: 2, max_seeds: 5}"  # looks at 3 and 5 seeds
VARIANTS = "  FCN: {model.ppm: false}\n  B1-AVE: {model.bins: [1]}\n  B1236-AVE: {model.bins: [1, 2, 3, 6]}\n"
FIRST = [f"{v}__s{s}" for v in ("B1-AVE", "B1236-AVE", "FCN") for s in range(3)]
SECOND = ["B1-AVE__s3", "B1-AVE__s4", "B1236-AVE__s3", "B1236-AVE__s4"]


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every sweep runs its one worker in this process


def miou(variant: str, seed: int) -> float:
    """FCN about 0.30; B1-AVE and B1236-AVE 0.50 +- 0.004, their difference alternating in sign (no verdict)."""
    if variant == "FCN":
        return 0.30 + 0.003 * (seed % 3)
    return 0.50 + 0.004 * ((seed + (variant == "B1236-AVE")) % 2)


class Trainer:
    """A run_fn that writes a completed record with `miou` and counts the cells it ran; `full_disk_from` makes the
    cells of that seed on fail as a full results disk does (the cell is given back, the sweep stops)."""

    def __init__(self, full_disk_from: int | None = None):
        self.cells: list[str] = []
        self.full_disk_from = full_disk_from

    def __call__(self, cfg, on_eval=None):
        if self.full_disk_from is not None and cfg.run.seed >= self.full_disk_from:
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(cfg.run.out_dir) / "x"))
        self.cells.append(f"{cfg.run.variant}__s{cfg.run.seed}")
        value = miou(cfg.run.variant, cfg.run.seed)
        rec = stand_in_record(cfg, "completed", {"miou": value, "pixel_acc": 0.9, "miou_present": value, "mean_acc": 0.6})
        write_record(rec, run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed))
        return rec


def study_file(folder: Path, body: str = f"seeds_on_demand: {PLAN}\n") -> Path:
    (folder / "base.yaml").write_text(STAND_IN_BASE)
    path = folder / "od.yaml"
    path.write_text(f"name: od\nbase_config: base.yaml\n{body}variants:\n{VARIANTS}")
    return path


def sweep(path: Path, out: Path, trainer: Trainer | None = None, *extra: str) -> tuple[int, list[str]]:
    trainer = trainer or Trainer()
    return runner.main([str(path), "--out", str(out), *extra], run_fn=trainer), sorted(trainer.cells)


def completed_once(out: Path, path: Path) -> list[str]:
    """The cells completed in the storage, after checking that none completed twice and that the audit of every
    cell asked so far finds nothing."""
    spec = load_study(path)
    study = queue.open_study(spec, open_storage(default_url(out / spec.name)))
    done = [t.user_attrs["cell"] for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == len(set(done)), done
    assert outputs.audit(study, start_cells(study, spec)) == []
    return sorted(done)


def round_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "] round " in line]


def test_rounds_add_seeds_only_to_the_variants_of_undecided_claims(tmp_path, capsys):
    out = tmp_path / "out"
    path = study_file(tmp_path)
    assert sweep(path, out) == (0, sorted(FIRST + SECOND))  # the FCN keeps its 3 seeds: its claims are decided
    log = capsys.readouterr().out
    assert round_lines(log) == [
        "[od] round 1: 1 claim row(s) undecided: B1236 beats B1 (B1236-AVE vs B1-AVE, look 1 of 2); "
        "next round adds B1-AVE +seeds 3, 4, B1236-AVE +seeds 3, 4",
        "[od] round 2: enqueued 4",
        "[od] round 2: 1 claim row(s) undecided: B1236 beats B1 (B1236-AVE vs B1-AVE, look 2 of 2); "
        "no seeds added (at the last look)"]
    assert "every cell ran exactly once" in log
    assert completed_once(out, path) == sorted(FIRST + SECOND)
    # the manifest carries the plan, and the claims judged at its looks say which look decided them
    manifest = json.loads((out / "od" / "study.json").read_text())
    plan = SequentialPlan.from_dict(manifest["seeds_on_demand"])
    assert plan.looks == (3, 5) and manifest["seeds"] == [0, 1, 2, 3, 4]
    rows = {(r.better, r.worse): r for r in judge_claims(read_table(out / "od"), plan=plan)}
    assert [(r.verdict, r.n, r.look, r.planned_looks) for r in rows.values()] == [
        ("supported", 3, 1, 2), ("supported", 3, 1, 2), ("inconclusive", 5, 2, 2)]
    # re-running: nothing trains, the same decision is printed
    assert sweep(path, out) == (0, [])
    assert round_lines(capsys.readouterr().out)[-1].endswith("no seeds added (at the last look)")


def test_re_running_resumes_a_round_cut_short(tmp_path, capsys):
    out = tmp_path / "out"
    path = study_file(tmp_path)
    code, cells = sweep(path, out, Trainer(full_disk_from=3))  # round 2's first cell finds the disk full
    assert (code, cells) == (2, FIRST)
    assert "cannot write" in capsys.readouterr().err
    code, cells = sweep(path, out)  # the cell given back runs first, then the rest of round 2
    assert (code, cells) == (0, SECOND)
    assert completed_once(out, path) == sorted(FIRST + SECOND)
    assert sweep(path, out) == (0, [])


def test_a_changed_plan_is_refused_and_leaves_the_storage_as_it_was(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep(study_file(tmp_path), out)[0] == 0
    journal = out / "od" / "optuna.journal"
    before = journal.read_bytes()
    capsys.readouterr()
    path = study_file(tmp_path, "seeds_on_demand: {first: 3, step: 1, max_seeds: 6}\n")
    assert sweep(path, out) == (2, [])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seeds_on_demand changed since the study started" in err
    assert journal.read_bytes() == before


@pytest.mark.slow  # renders a report (figures): about 5 s
def test_the_report_judges_at_the_manifests_looks(tmp_path):
    from study.report.render import render_study

    out = tmp_path / "out"
    assert sweep(study_file(tmp_path), out)[0] == 0
    index = (render_study(out / "od", tmp_path / "reports") / "index.md").read_text()
    assert "3 (look 1 of 2)" in index and "5 (look 2 of 2)" in index


@pytest.mark.parametrize("body, message", [
    ("seeds_on_demand: {first: 2, step: 2, max_seeds: 5}\n", "seeds_on_demand: field 'first' must be at least 3"),
    ("seeds_on_demand: {first: 3, steps: 2}\n", "seeds_on_demand: unknown field 'steps'"),
    ("seeds_on_demand: {first: 3, max_seeds: 2}\n", "seeds_on_demand: field 'max_seeds' (2) is below 'first'"),
    ("seeds_on_demand: {first: 3, max_seeds: 4, order: [7, x]}\n", "seeds_on_demand.order: must be a list"),
    ("seeds_on_demand: 5\n", "seeds_on_demand: expected a mapping"),
    (f"seeds: [0, 1]\nseeds_on_demand: {PLAN}\n", "seeds: a study with seeds_on_demand takes its seeds"),
])
def test_a_bad_field_is_a_one_line_error(tmp_path, capsys, body, message):
    path = study_file(tmp_path, body)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_study(path)
    assert sweep(path, tmp_path / "out") == (2, [])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err
    assert not (tmp_path / "out" / "od").exists()  # refused before anything was written


def test_seeds_on_the_command_line_are_refused(tmp_path, capsys):
    assert sweep(study_file(tmp_path), tmp_path / "out", None, "--seeds", "0,1") == (2, [])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds: the study adds seeds on demand" in err
