"""Pre-registration recorded by the tool (study.registration): the study file as each sweep found it, what
changed after runs had ended, the history rebuilt from git, and the report's section."""

import os
import subprocess
import textwrap

from conftest import STAND_IN_BASE
from helpers import fake_run  # noqa: I001

from study.manifest import StudyManifest, read_manifest, write_manifest
from study.registration import added_after, changes, digest, from_git, register
from study.report.blocks import to_markdown
from study.report.registration_block import registration_blocks
from study.search.runner import registered
from study.search.space import cell_config, load_study

V1 = textwrap.dedent("""
    name: grid
    base_config: base.yaml
    seeds: [0, 1]
    variants:
      FCN: {model.ppm: false}
      B1-AVE: {model.bins: [1], model.pool: avg}
""")
V2 = V1 + "  FCN-CAP-DR: {model.bins: [1, 2, 3, 6], model.pool: none, model.reduction: true}\n"


def test_a_version_is_recorded_once_and_only_changes_after_runs_ended_are_named():
    regs = register(None, V1, "2026-12-01T00:00:00+00:00", 0)
    assert regs == register(regs, V1, "2026-12-02T00:00:00+00:00", 5)  # the same text: nothing new
    assert regs[0]["digest"] == digest(V1) and regs[0]["finished"] == 0 and regs[0]["text"] == V1
    regs = register(regs, "# a comment\n" + V1, "2026-12-02T00:00:00+00:00", 3)  # a comment: a version, no change
    assert len(regs) == 2 and changes(regs) == [] and added_after(regs) == {}
    regs = register(regs, V2.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3, 4]\nequivalence_margin: 0.5"),
                    "2026-12-03T00:00:00+00:00", 4)
    assert [(c.finished, c.what) for c in changes(regs)] == [
        (4, "variant FCN-CAP-DR added"), (4, "3 seeds added (2-4)"),
        (4, "smallest difference of interest (equivalence_margin) set to 0.5")]
    assert added_after(regs) == {"FCN-CAP-DR": 4}
    before_any = register(register(None, V1, "t0", 0), V2, "t1", 0)  # changed before any run ended: registered
    assert changes(before_any) == [] and added_after(before_any) == {}
    late_first = register(None, V1, "t0", 2)  # first recorded after runs had ended: every variant is late
    assert added_after(late_first) == {"FCN": 2, "B1-AVE": 2}


def test_a_sweep_keeps_the_history_and_counts_the_runs_that_had_ended(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "grid.yaml"
    path.write_text(V1)
    study_dir = tmp_path / "out" / "grid"
    spec = load_study(path)
    first = registered(study_dir, spec)
    assert len(first) == 1 and first[0]["finished"] == 0
    write_manifest(study_dir, StudyManifest(name="grid", registrations=first))
    fake_run(cell_config(spec, "FCN", 0, out_dir=str(tmp_path / "out")))
    assert registered(study_dir, spec) == first  # unchanged file: the same history
    path.write_text(V2)
    second = registered(study_dir, load_study(path))
    assert [e["finished"] for e in second] == [0, 1] and added_after(second) == {"FCN-CAP-DR": 1}
    write_manifest(study_dir, StudyManifest(name="grid", registrations=second))
    assert read_manifest(study_dir).registrations == second  # through study.json and back


def test_a_sweep_resumed_from_a_copy_continues_its_history(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    path = tmp_path / "grid.yaml"
    path.write_text(V2)
    copy = tmp_path / "shipped"
    history = [*register(None, V1, "t0", 0), *register(None, V1.replace("[0, 1]", "[0, 1, 2]"), "t1", 2)]
    write_manifest(copy, StudyManifest(name="grid", registrations=history))
    study_dir = tmp_path / "out" / "grid"
    fake_run(cell_config(load_study(path), "FCN", 0, out_dir=str(tmp_path / "out")))
    regs = registered(study_dir, load_study(path), copy)
    assert regs[:2] == history and regs[2]["digest"] == digest(V2) and regs[2]["finished"] == 1
    assert [e["finished"] for e in registered(study_dir, load_study(path))] == [1]  # without the copy: a new start
    write_manifest(study_dir, StudyManifest(name="grid", registrations=regs[:1]))
    assert len(registered(study_dir, load_study(path), copy)) == 2  # its own history first: the copy is not read


def test_the_history_is_rebuilt_from_the_study_files_commits(tmp_path):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def commit(text, when):
        (tmp_path / "grid.yaml").write_text(text)
        subprocess.run(["git", "add", "grid.yaml"], cwd=tmp_path, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "v"], cwd=tmp_path, check=True,
                       env={**env, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when})

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit(V1, "2026-12-05T07:00:00+00:00")
    commit(V2, "2026-12-05T09:00:00+00:00")
    ends = ["2026-12-05T08:00:00+00:00", "2026-12-05T08:30:00+00:00", "2026-12-05T09:30:00+00:00"]
    regs = from_git(tmp_path / "grid.yaml", ends)
    assert [(e["at"], e["finished"], e["source"]) for e in regs] == [
        ("2026-12-05T07:00:00+00:00", 0, "git"), ("2026-12-05T09:00:00+00:00", 2, "git")]
    assert added_after(regs) == {"FCN-CAP-DR": 2}


def test_the_report_says_what_entered_after_runs_had_ended():
    assert "Not recorded" in to_markdown(registration_blocks(None, 10))
    clean = to_markdown(registration_blocks(register(None, V1, "2026-12-01T00:00:00+00:00", 0), 4))
    assert "first recorded on 2026-12-01, before any of its runs had ended (recorded by the sweep)" in clean
    assert "Nothing a verdict reads" in clean
    regs = register(register(None, V1, "2026-12-01T00:00:00+00:00", 0), V2, "2026-12-02T10:00:00+00:00", 4)
    md = to_markdown(registration_blocks(regs, 6))
    assert "- 2026-12-02, after 4 of the study's 6 runs had ended: variant FCN-CAP-DR added" in md
