"""A confirmation study's report sets the original study's verdicts beside its own (study.report.confirm_block)."""

import pytest
from fabricate import fabricate

from study.report.__main__ import main as report_main

FCN = [0.50, 0.52, 0.51, 0.50, 0.49]


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_the_confirmation_names_what_moved_and_what_one_study_lacks(tmp_path):
    results = tmp_path / "results"
    noise = [0.001, -0.002, 0.0, 0.002, -0.001]
    fabricate(results, {"FCN": FCN, "B1-AVE": [f + 0.05 + e for f, e in zip(FCN, noise, strict=True)],
                        "B1-MAX": [f + 0.03 - e for f, e in zip(FCN, noise, strict=True)],
                        "B1236-AVE": [f + 0.08 + e for f, e in zip(FCN, noise, strict=True)]})
    confirm = fabricate(results, {"FCN": FCN, "B1-AVE": [f + d for f, d in zip(FCN, [0.01, -0.01, 0.02, 0, -0.02],
                                                                                  strict=True)],
                                  "B1-MAX": [f + 0.03 - e for f, e in zip(FCN, noise, strict=True)]},
                        name="table1_confirm", confirms="table1")
    out = tmp_path / "reports"
    assert report_main([str(confirm), "--out", str(out)]) == 0
    md = (out / "table1_confirm" / "index.md").read_text()
    section = md.split("## Replication of table1")[1].split("\n## ")[0]
    # B1-AVE: +5 points on every seed there, about nothing here (and so 3 below B1-MAX); B1236-AVE only in table1
    assert ("1 of 3 claim rows in both studies keep their verdict here; moved: PPM beats the FCN baseline, B1-AVE "
            "vs FCN: supported -> inconclusive; AVE beats MAX, B1-AVE vs B1-MAX: supported -> contradicted; 2 rows "
            "of table1 not re-run here (their variants are not in this study).") in section
    assert "| moved " in section and "| same " in section and "B1236-AVE vs" not in section
    assert "table1, 5 seeds a row, intervals at " in section and "here, 5 seeds a row, intervals at " in section
    # the study it re-runs names it back, with the same verdicts kept and moved
    assert report_main([str(results / "table1"), "--out", str(out)]) == 0
    original = (out / "table1" / "index.md").read_text().split("## Replications of this study")[1].split("\n## ")[0]
    assert ("- table1_confirm: 1 of 3 verdicts kept; moved (here -> there): PPM beats the FCN baseline, B1-AVE vs "
            "FCN: supported -> inconclusive; AVE beats MAX, B1-AVE vs B1-MAX: supported -> contradicted") in original


def test_a_study_nobody_re_ran_has_no_replications_section(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": FCN, "B1-AVE": [f + 0.05 for f in FCN]})
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    assert "Replications of this study" not in (tmp_path / "reports" / study.name / "index.md").read_text()


def test_a_missing_original_is_said_not_guessed(tmp_path):
    confirm = fabricate(tmp_path / "results", {"FCN": FCN, "B1-AVE": [f + 0.05 for f in FCN]},
                        name="table1_confirm", confirms="table1")
    assert report_main([str(confirm), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "table1_confirm" / "index.md").read_text()
    assert "The study table1 is not beside this one" in md


LOCAL = {"LOC-FCN": {"data.probe_kind": "local", "model.ppm": False},
         "LOC-B1-AVE": {"data.probe_kind": "local", "model.bins": [1], "model.pool": "avg", "model.reduction": False}}
NULL = {"a": "LOC-B1-AVE", "b": "LOC-FCN", "expected": "equivalent", "margin": 2, "why": "local labels"}


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_a_controls_confirmation_sets_each_comparison_beside_the_original_and_names_what_moved(tmp_path):
    results, out = tmp_path / "results", tmp_path / "reports"
    fcn = [0.770, 0.772, 0.771, 0.769, 0.770]
    # the first edition: within ±0.2 points on every seed (equivalent within 2); the second: +5 points on every
    # seed, give or take 0.1 (a null that gains: against what the construction implies, by both rules)
    fabricate(results, {"LOC-FCN": fcn, "LOC-B1-AVE": [f + d / 100 for f, d in zip(fcn, [0.2, 0.1, -0.1, 0.2, 0.0],
                                                                                        strict=True)]},
              variants=LOCAL, name="controls", paper_table=None, baseline="LOC-FCN", controls=[NULL])
    again = fabricate(results, {"LOC-FCN": fcn, "LOC-B1-AVE": [f + d / 100 for f, d in zip(fcn, [5, 5.1, 4.9, 5, 5],
                                                                                             strict=True)]},
                      variants=LOCAL, name="controls_v3", paper_table=None, baseline="LOC-FCN", controls=[NULL],
                      confirms="controls")
    assert report_main([str(again), "--out", str(out)]) == 0
    section = (out / "controls_v3" / "index.md").read_text().split("## Replication of controls")[1].split("\n## ")[0]
    assert ("0 of 1 control comparisons in both studies read the same here (as implied by the control rule, and the "
            "claims rule's verdict); moved: LOC-B1-AVE vs LOC-FCN: yes, equivalent within ±2 -> no, supported.") \
        in section
    assert "| local " in section and "| moved " in section and "| 0.08 [-0.04, 0.20] " in section and "| 5.00 [4.93, 5.07] " in section
    assert report_main([str(results / "controls"), "--out", str(out)]) == 0
    original = (out / "controls" / "index.md").read_text().split("## Replications of this study")[1].split("\n## ")[0]
    assert ("- controls_v3: 0 of 1 comparisons read the same; moved (here -> there): LOC-B1-AVE vs LOC-FCN: yes, "
            "equivalent within ±2 -> no, supported. fabricated") in original
