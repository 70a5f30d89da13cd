"""The README's two commands, in order, on a fresh copy of the repository: the study writes only git-ignored
files, and the suite's guard on the shipped reports still passes after it."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fresh_copy(dest: Path) -> Path:
    """The files git would commit from the working tree (uncommitted edits included) in a new git repository."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    dest.mkdir()
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)
    return dest


def test_the_noxfile_runs_the_default_study_and_renders_it_outside_the_shipped_reports():
    text = (REPO / "noxfile.py").read_text()
    assert '"configs/studies/table1_v3.yaml"' in text and '"study.report", "--study-file"' in text
    assert "--ship" not in text.split("def ablation")[1].split("@nox.session")[0]


def test_the_default_study_file_is_the_shipped_table1_v3():
    import json

    import yaml

    study = yaml.safe_load((REPO / "configs/studies/table1_v3.yaml").read_text())
    shipped = json.loads((REPO / "reports/_inputs/table1_v3/study.json").read_text())
    runs = sorted(p.name for p in (REPO / "reports/_inputs/table1_v3/runs").iterdir())
    assert runs == sorted(f"{v}__s{s}" for v in study["variants"] for s in study["seeds"])
    assert shipped["name"] == study["name"]


@pytest.mark.slow  # a small stand-in study in a fresh copy, then the shipped-report guard there (about a minute)
def test_the_readmes_two_commands_in_order_leave_git_clean_and_the_suite_green(tmp_path):
    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    clone = _fresh_copy(tmp_path / "clone")
    tiny = ["train.steps=2", "train.log_every=1", "data.train_size=16", "data.val_size=8", "bench.enabled=false",
            "eval.qualitative=1"]
    # what `nox -s ablation` runs (noxfile.py), on a stand-in of the default study: one seed, two steps
    run = subprocess.run([sys.executable, "-m", "study", "sweep", "configs/studies/table1_v3.yaml", "--workers", "1",
                          "--seeds", "0", *tiny], cwd=clone, capture_output=True, text=True)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "study.report", "--study-file", "configs/studies/table1_v3.yaml"],
                            cwd=clone, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (clone / "results/reports/table1_v3/index.md").is_file()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert status == ""
    # then `nox -s tests`: its guard on the shipped reports passes in the same copy
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_report_ship.py", "tests/test_two_commands.py", "-k", "not two_commands_in_order"],
                           cwd=clone, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-3000:]
