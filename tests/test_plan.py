"""Planning before running (study.results.plan, `python -m study plan`): what each claim row can detect at the
planned seeds from an earlier study's noise, and the seeds m needs."""

import math
import textwrap

import pytest
from conftest import STAND_IN_BASE
from fabricate import fabricate  # noqa: I001

from study.__main__ import main
from study.results.claims import ClaimRow
from study.results.plan import noise_for, plan_lines, plan_rows
from study.results.power import detectable_effect, seeds_for
from study.search.space import cell_config, load_study

STUDY = textwrap.dedent("""
    name: planned
    base_config: base.yaml
    seeds: [0, 1, 2, 3, 4]
    equivalence_margin: 1
    noise_from: table1
    variants:
      FCN: {model.ppm: false}
      B1-AVE: {model.bins: [1], model.pool: avg}
      B1236-AVE: {model.bins: [1, 2, 3, 6], model.pool: avg}
""")


def _configs(tmp_path):
    (tmp_path / "base.yaml").write_text(STAND_IN_BASE)
    (tmp_path / "planned.yaml").write_text(STUDY)
    spec = load_study(tmp_path / "planned.yaml")
    return {v: cell_config(spec, v, 0).to_dict() for v in spec.variants}


def test_noise_comes_from_the_same_pair_else_the_same_claim_else_every_row():
    earlier = [ClaimRow("B1236 beats B1", "B1236-AVE", "B1-AVE", "inconclusive", sd=2.0),
               ClaimRow("PPM beats the FCN baseline", "B1-AVE", "FCN", "supported", sd=1.0),
               ClaimRow("PPM beats the FCN baseline", "B1-MAX", "FCN", "supported", sd=3.0)]
    assert noise_for(("B1236 beats B1", "B1236-AVE", "B1-AVE"), earlier) == (2.0, "same pair")
    assert noise_for(("PPM beats the FCN baseline", "B1236-AVE", "FCN"), earlier) == \
        (2.0, "same claim (median of 2 rows)")
    assert noise_for(("DR helps", "X", "Y"), earlier) == (2.0, "every row (median of 3)")
    assert math.isnan(noise_for(("DR helps", "X", "Y"), [])[0])


def test_the_plan_gives_each_row_its_detectable_difference_and_the_seeds_m_needs(tmp_path):
    earlier = [ClaimRow("PPM beats the FCN baseline", "B1-AVE", "FCN", "supported", sd=0.5)]
    rows = plan_rows(_configs(tmp_path), 5, earlier, margin=1.0)
    assert [(r.claim, r.better, r.worse) for r in rows] == [
        ("PPM beats the FCN baseline", "B1-AVE", "FCN"), ("PPM beats the FCN baseline", "B1236-AVE", "FCN"),
        ("B1236 beats B1", "B1236-AVE", "B1-AVE")]
    level = 0.05 / 3  # Holm's first threshold over the 3 planned rows
    assert rows[0].detectable == pytest.approx(0.5 * detectable_effect(5, level))
    assert rows[0].seeds_for_m == seeds_for(1.0 / 0.5, level)
    assert all(r.sd == 0.5 for r in rows) and rows[2].noise == "every row (median of 1)"
    lines = plan_lines("planned", rows, 5, 1.0, "earlier")
    # at 5 seeds and 0.05/3 a paired t-test needs |Δ| / sd of about 3 (80% power): 1.5 points > m = 1
    assert rows[0].detectable > 1.0
    assert lines[-1].startswith("[planned] plan: 3 of 3 rows cannot detect m = 1 at 5 seeds")
    ok = plan_lines("planned", plan_rows(_configs(tmp_path), 40, earlier, margin=1.0), 40, 1.0, "earlier")
    assert ok[-1] == "[planned] plan: every row can detect m = 1 at 40 seeds"


def test_the_plan_command_reads_the_named_earlier_study(tmp_path, monkeypatch, capsys):
    _configs(tmp_path)
    fabricate(tmp_path / "results", {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.55, 0.56, 0.58]})
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "planned.yaml"]) == 0
    out = capsys.readouterr().out
    assert "noise from results/table1; m = 1 points" in out and "same pair" in out
    (tmp_path / "planned.yaml").write_text(STUDY.replace("noise_from: table1", "noise_from: nothing"))
    assert main(["plan", "planned.yaml"]) == 2
    assert "noise_from: no results of study 'nothing'" in capsys.readouterr().err
