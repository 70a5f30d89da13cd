"""Shipped reports: inputs copied next to the rendered report re-render it byte for byte without results/."""

import shutil
from pathlib import Path

import pytest
from fabricate import fabricate  # noqa: I001

from study.report.__main__ import main as report_main
from study.report.ship import SHIPPED
from study.results.table import write_table

MIOU = {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.56, 0.57, 0.58], "B1236-AVE": [0.60, 0.61, 0.59]}


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # renders a whole shipped study, figures included
def test_shipped_inputs_rerender_the_report_identically(tmp_path):
    study = fabricate(tmp_path / "results", MIOU)
    write_table(study)
    (study / "runs" / "FCN__s0" / "model.pt").write_bytes(b"weights")  # never shipped
    out = tmp_path / "reports"
    assert report_main(["--results", str(tmp_path / "results"), "--shipped", str(out), "--ship"]) == 0
    inputs = out / "_inputs" / "table1"
    shipped = files(inputs)
    assert "study.json" in shipped and "runs.parquet" in shipped and "runs/FCN__s0/record.json" in shipped
    assert not any(name.endswith(".pt") or "journal" in name for name in shipped)
    pngs = sorted(name for name in shipped if name.endswith(".png"))
    shown = sorted(p.name for p in (out / "table1" / "qualitative").iterdir())
    assert pngs and [f"{n.split('/')[1]}_{n.split('/')[-1]}" for n in pngs] == shown  # only the strips shown
    rendered = {k: v for k, v in files(out).items() if not k.startswith("_inputs/")}

    shutil.rmtree(tmp_path / "results")  # a fresh clone: no results/, only what git holds
    shutil.rmtree(out / "table1")
    assert report_main(["--results", str(tmp_path / "results"), "--out", str(out), "--shipped", str(out)]) == 0
    again = {k: v for k, v in files(out).items() if not k.startswith("_inputs/")}
    assert again == rendered and files(inputs) == shipped
    md = (out / "table1" / "index.md").read_text()
    assert "python -m study.report --study-file" in md and "- weights: " in md


@pytest.mark.slow  # renders a whole shipped study, figures included
def test_results_take_precedence_over_shipped_inputs(tmp_path):
    study = fabricate(tmp_path / "results", MIOU)
    out = tmp_path / "reports"
    assert report_main(["--results", str(tmp_path / "results"), "--shipped", str(out), "--ship"]) == 0
    fresh = fabricate(tmp_path / "results", {k: [v + 0.1 for v in vals] for k, vals in MIOU.items()})
    assert fresh == study
    assert report_main(["--results", str(tmp_path / "results"), "--out", str(out), "--shipped", str(out)]) == 0
    assert "| B1236-AVE " in (out / "table1" / "index.md").read_text()
    assert "70.0 ± 1.0" in (out / "table1" / "index.md").read_text()  # the new results, not the shipped ones


@pytest.mark.slow  # renders every shipped study (figures included)
def test_the_shipped_reports_rerender_byte_for_byte(tmp_path):
    """reports/ in git re-renders from reports/_inputs alone to the same bytes, the index included."""
    shipped = Path(__file__).resolve().parents[1] / "reports"
    if not (shipped / SHIPPED).is_dir():
        pytest.skip("no shipped reports")
    copy = tmp_path / "reports"
    shutil.copytree(shipped, copy)
    before = files(copy)
    assert report_main(["--results", str(tmp_path / "no-results"), "--out", str(copy), "--shipped", str(copy)]) == 0
    after = files(copy)
    assert sorted(after) == sorted(before)
    assert [name for name in before if after[name] != before[name]] == []


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_shipped_tables_are_what_todays_code_builds_from_the_shipped_records():
    """A fresh clone may see runs.parquet older than the records and rebuild it: both paths must give one table,
    so the shipped reports re-render to the same bytes either way."""
    import pandas as pd

    from study.report.ship import shipped_studies
    from study.results.table import build_table

    root = Path(__file__).resolve().parents[1] / "reports"
    studies = shipped_studies(root)
    if not studies:
        pytest.skip("no shipped reports")
    for inputs in studies:
        shipped = pd.read_parquet(inputs / "runs.parquet")
        pd.testing.assert_frame_equal(shipped, build_table(inputs), check_dtype=False, obj=inputs.name)


def test_no_shipped_record_holds_a_machine_path():
    """Every location a shipped record names (data root, feature cache, output folder, ...) is relative to the
    repository, so the records say nothing of the machine they ran on and a clone reproduces them where it is."""
    import json

    def paths(value, where=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, f"{where}.{k}" if where else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from paths(v, f"{where}[{i}]")
        elif isinstance(value, str) and value.startswith(("/", "~")):
            yield where, value

    shipped = Path(__file__).resolve().parents[1] / "reports" / "_inputs"
    found = [f"{record.relative_to(shipped)}: {key} = {value}"
             for record in sorted(shipped.glob("*/runs/*/record.json"))
             for key, value in paths(json.loads(record.read_text())["config"])]
    assert not found, "absolute paths in shipped records:\n" + "\n".join(found)
