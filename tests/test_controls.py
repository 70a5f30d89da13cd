"""The controls' judgement (study.results.controls) and its report block, on hand-computed cases."""

import dataclasses
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from study.manifest import Comparison
from study.report.blocks import to_markdown
from study.report.controls_block import controls_blocks
from study.results.controls import as_implied, concluded, judge_controls, paired_tests
from study.results.table import ResultsError
from study.search.space import load_study

STUDY = Path(__file__).resolve().parents[1] / "configs" / "studies" / "controls.yaml"
T_95_DF4 = 2.1318  # t table: one-sided 5% critical value at 4 degrees of freedom


def test_superiority_by_hand():
    # Δ = 1..5: mean 3, sd sqrt(2.5), se sqrt(2.5 / 5) = 0.7071; t = 3 / 0.7071 = 4.243
    t = paired_tests([1, 2, 3, 4, 5], margin=2.0, alpha=0.05)
    assert t["n"] == 5 and t["diff"] == 3.0
    assert t["ci_low"] == pytest.approx(3 - T_95_DF4 * math.sqrt(0.5), abs=1e-3)
    assert t["ci_high"] == pytest.approx(3 + T_95_DF4 * math.sqrt(0.5), abs=1e-3)
    assert t["p_better"] == pytest.approx(0.00662, abs=2e-5)  # P(T_4 > 4.243)
    # equivalence fails on the upper side: (3 - 2) / 0.7071 = 1.414, P(T_4 < 1.414) = 0.885
    assert t["p_equivalent"] == pytest.approx(0.885, abs=1e-3)


def test_equivalence_by_hand():
    # Δ = 0.5, -0.5, 1, 0, -1: mean 0, sd sqrt(0.625), se 0.3536; TOST t = (0 + 2) / 0.3536 = 5.657 on both sides
    t = paired_tests([0.5, -0.5, 1.0, 0.0, -1.0], margin=2.0, alpha=0.05)
    assert t["p_equivalent"] == pytest.approx(0.00241, abs=2e-5)  # P(T_4 > 5.657)
    assert t["p_noninferior"] == pytest.approx(t["p_equivalent"]) and t["p_better"] == pytest.approx(0.5)
    assert t["ci_high"] == pytest.approx(T_95_DF4 * math.sqrt(0.125), abs=1e-3)
    assert concluded(t["ci_low"], t["ci_high"], 2.0) == "equivalent within ±2"


def test_a_non_significant_difference_is_not_no_difference():
    # Δ = 3, -3, 2, -2, 0: mean 0 (p_better 0.5, nothing "significant"), but se 1.140 is too wide for the margin:
    # TOST t = 2 / 1.140 = 1.754, P(T_4 > 1.754) = 0.077 > 0.05
    t = paired_tests([3, -3, 2, -2, 0], margin=2.0, alpha=0.05)
    assert t["p_better"] == pytest.approx(0.5) and t["p_equivalent"] == pytest.approx(0.0771, abs=2e-4)
    assert t["ci_low"] < -2 and t["ci_high"] > 2
    assert as_implied("equivalent", t["ci_low"], t["ci_high"], 2.0) == "undecided"
    assert concluded(t["ci_low"], t["ci_high"], 2.0) == "undecided"


def test_identical_differences_decide_without_spread():
    t = paired_tests([1.0, 1.0, 1.0], margin=2.0, alpha=0.05)
    assert t["ci_low"] == t["ci_high"] == 1.0 and t["p_better"] == 0.0 and t["p_equivalent"] == 0.0
    assert math.isnan(paired_tests([1.0], margin=2.0, alpha=0.05)["ci_low"])


@pytest.mark.parametrize("expected, lo, hi, answer", [
    ("better", 0.5, 6.0, "yes"), ("better", -1.0, 1.5, "no"), ("better", -1.0, 3.0, "undecided"),
    ("better", -5.0, -1.0, "no"),
    ("worse", -6.0, -0.5, "yes"), ("worse", -1.5, 1.0, "no"), ("worse", -3.0, 1.0, "undecided"),
    ("worse", 1.0, 5.0, "no"),
    ("non-inferior", -1.5, 1.0, "yes"), ("non-inferior", -1.5, -0.2, "yes"), ("non-inferior", -9.0, -3.0, "no"),
    ("non-inferior", -3.0, 1.0, "undecided"),
    ("equivalent", -1.9, 1.9, "yes"), ("equivalent", 0.2, 1.5, "yes"), ("equivalent", 0.5, 4.0, "no"),
    ("equivalent", -4.0, -0.1, "no"), ("equivalent", -2.5, 1.0, "undecided"), ("equivalent", math.nan, math.nan,
                                                                               "undecided"),
])
def test_as_implied(expected, lo, hi, answer):
    assert as_implied(expected, lo, hi, 2.0) == answer


def test_concluded_words():
    assert concluded(0.5, 6.0, 2.0) == "better by an unknown amount" and concluded(2.5, 6.0, 2.0) == \
        "better by at least 2" and concluded(0.5, 1.0, 2.0) == "better by less than 2"
    assert concluded(-6.0, -0.5, 2.0) == "worse by an unknown amount" and concluded(-1.0, -0.5, 2.0) == \
        "worse by less than 2"
    assert concluded(-1.0, 3.0, 2.0) == "not worse by 2 or more"
    assert concluded(-3.0, 1.0, 2.0) == "not better by 2 or more"
    assert concluded(math.nan, math.nan, 2.0) == "too few seeds"
    with pytest.raises(ValueError, match="expected"):
        as_implied("sideways", 0.0, 1.0, 2.0)


def _table(values: dict[str, list[float]], kinds: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for variant, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"variant": variant, "seed": seed, "status": "completed", "miou": v,
                         "probe_kind": (kinds or {}).get(variant) or _kind(variant)})
    return pd.DataFrame(rows)


def _kind(variant: str) -> str:
    return {"PRES": "presence", "LOC": "local", "MIS": "misaligned"}.get(variant.split("-")[0], "proportion")


def _comparisons(df: pd.DataFrame, margin: float = 2.0) -> list[Comparison]:
    """The shipped controls study's comparisons whose two variants are in `df`, at one margin (the hand-computed
    cases below use 2 points)."""
    import dataclasses

    held = set(df["variant"])
    return [dataclasses.replace(c, margin=margin) for c in (Comparison.from_dict(d) for d in load_study(STUDY).controls)
            if {c.a, c.b} <= held]


FCN = [0.80, 0.81, 0.79, 0.80, 0.82]


def test_judge_a_null_control_and_a_collapse():
    df = _table({"LOC-FCN": FCN, "LOC-B1-AVE": [f + d / 100 for f, d in zip(FCN, [0.5, -0.5, 1, 0, -1], strict=True)],
                 "PRES-B1-AVE": [0.60, 0.62, 0.61, 0.60, 0.59], "PRES-B1-MAX": [0.25, 0.26, 0.24, 0.25, 0.25],
                 "PRES-FCN": [0.50, 0.51, 0.50, 0.52, 0.50]})
    df.loc[(df["variant"] == "PRES-FCN") & (df["seed"] == 4), "status"] = "failed"  # left out of the pairs
    rows = {(r.a, r.b): r for r in judge_controls(df, _comparisons(df))}
    assert list(rows) == [("PRES-B1-MAX", "PRES-B1-AVE"), ("PRES-B1-MAX", "PRES-FCN"), ("LOC-B1-AVE", "LOC-FCN")]
    local = rows[("LOC-B1-AVE", "LOC-FCN")]
    assert local.k == 3 and local.level == pytest.approx(1 - 0.1 / 3)
    assert local.diff == pytest.approx(0.0, abs=1e-9) and local.as_implied == "yes"
    assert local.p_adjusted == pytest.approx(min(1.0, 3 * 0.00241), abs=1e-4)  # Bonferroni over 3
    worse = rows[("PRES-B1-MAX", "PRES-B1-AVE")]
    assert worse.diff == pytest.approx(25.0 - 60.4) and worse.as_implied == "no" and worse.concluded == "worse by at least 2"
    vs_fcn = rows[("PRES-B1-MAX", "PRES-FCN")]
    assert vs_fcn.n == 4 and vs_fcn.seeds == (0, 1, 2, 3) and vs_fcn.as_implied == "no"


def test_too_few_seeds_decide_nothing():
    df = _table({"MIS-FCN": [0.5, 0.5], "MIS-B1236-AVE-DR": [0.7, 0.71]})
    (row,) = judge_controls(df, _comparisons(df))
    assert row.n == 2 and row.concluded == "too few seeds" and row.as_implied == "undecided"
    assert math.isnan(row.p_adjusted)


def test_a_comparison_across_two_data_kinds_is_refused():
    df = _table({"LOC-FCN": FCN, "LOC-B1-AVE": FCN}, kinds={"LOC-B1-AVE": "proportion"})
    with pytest.raises(ResultsError, match="control LOC-B1-AVE vs LOC-FCN: the two variants ran on different data"):
        judge_controls(df, _comparisons(df))


def test_a_comparison_naming_a_missing_variant_is_a_one_line_error(tmp_path):
    from study.config import ConfigError

    text = STUDY.read_text().replace("{a: LOC-B1-AVE, b: LOC-FCN", "{a: LOC-B1-MAX, b: LOC-FCN")
    (tmp_path / "controls.yaml").write_text(text.replace("base_config: ../probe.yaml",
                                                         f"base_config: {STUDY.parents[1] / 'probe.yaml'}"))
    with pytest.raises(ConfigError, match=r"controls\[2\]: names variant 'LOC-B1-MAX', which the study does not have"):
        load_study(tmp_path / "controls.yaml")


def test_a_variant_without_runs_gives_a_row_not_a_silent_drop():
    df = _table({"LOC-FCN": FCN})
    (row,) = judge_controls(df, [Comparison("LOC-B1-AVE", "LOC-FCN", "equivalent", 2.0, "why")])
    assert row.n == 0 and row.concluded == "too few seeds"


def test_the_kind_comes_from_the_study_file_to_the_manifest_not_from_the_name():
    from study.manifest import StudyManifest
    from study.search.space import study_manifest

    assert study_manifest(load_study(STUDY), "cmd", Path.cwd()).kind == "controls"
    assert study_manifest(load_study(STUDY.parents[0] / "aa_probe.yaml"), "cmd", Path.cwd()).kind == "aa"
    renamed = study_manifest(load_study(STUDY.parents[0] / "table1.yaml"), "cmd", Path.cwd())
    assert renamed.kind == "grid" and dataclasses.replace(renamed, name="my_controls").kind == "grid"  # only a name
    # a manifest written before kinds were typed says grid beside its comparisons or pair: read as what it is
    old = {"name": "x", "kind": "grid", "aa": {"a": "A", "b": "B", "seeds_per_group": 3}}
    assert StudyManifest.from_dict(old).kind == "aa"
    assert StudyManifest.from_dict({"name": "x", "controls": [{"a": "A"}]}).kind == "controls"


def test_block_renders_the_table_and_the_rule():
    df = _table({"LOC-FCN": FCN, "LOC-B1236-AVE-DR": [f + 0.001 for f in FCN]})
    md = to_markdown(controls_blocks(df, judge_controls(df, _comparisons(df))))
    assert "| control " in md and "| as implied? " in md and "no difference (within ±2)" in md
    assert "| local " in md and "| better by less than 2 " in md and "TOST" in md
    assert "No control comparison" in to_markdown(controls_blocks(_table({"FCN": FCN}, {"FCN": "proportion"}), []))


def test_the_study_file_runs_every_control_with_its_probe_and_margin():
    spec = load_study(STUDY)
    assert len(spec.seeds) >= 5 and len(spec.controls) == 13
    comparisons = [Comparison.from_dict(c) for c in spec.controls]
    presence = re.search(r"margin ([0-9.]+) mIoU points on the\s+presence controls", spec.description)
    local = re.search(r"margin ([0-9.]+) points on the local null", spec.description)
    assert presence and local
    assert {c.margin for c in comparisons if c.a.startswith(("PRES", "DIL", "SHO"))} == {float(presence.group(1))}
    assert {c.a for c in comparisons if c.expected == "worse"} == {"DIL-B1-AVE", "SHO-B1236-AVE-DR"}
    assert {c.margin for c in comparisons if c.a.startswith(("LOC", "LFN"))} == {float(local.group(1))} == {0.5}
    fine = [c for c in comparisons if c.a.startswith("LFN")]  # the local null at no bin's scale, bins one by one
    assert {c.b for c in fine} == {"LFN-FCN", "LFN-FCN-CAP-DR"} and {c.expected for c in fine} == {"equivalent"}
    assert {tuple(spec.variants[c.a]["model.bins"]) for c in fine} == {(1, 2, 3, 6), (6,), (1, 2, 3)}
    for cmp in comparisons:
        kinds = {spec.variants[v]["data.probe_kind"] for v in (cmp.a, cmp.b)}
        assert len(kinds) == 1
        for v in (cmp.a, cmp.b):
            pool = "none" if "-CAP" in v else "max" if "MAX" in v else "avg"
            assert v.endswith("FCN") or spec.variants[v]["model.pool"] == pool


def test_runs_that_did_not_train_are_left_out_and_counted():
    df = _table({"PRES-B1-MAX": [0.70, 0.25, 0.71, 0.72, 0.70], "PRES-B1-AVE": [0.60, 0.62, 0.61, 0.60, 0.59]})
    df["trained"] = pd.array([True, False, True, None, True] + [True] * 5, dtype="boolean")
    (row,) = judge_controls(df, _comparisons(df))
    assert row.seeds == (0, 2, 3, 4) and row.n == 4  # seed 1 did not train; a missing flag counts as trained
    assert row.untrained == {"PRES-B1-MAX": (1, 5), "PRES-B1-AVE": (0, 5)}
    assert row.diff == pytest.approx(((70 - 60) + (71 - 61) + (72 - 60) + (70 - 59)) / 4)
    from study.report.blocks import to_markdown
    from study.report.controls_block import controls_blocks

    md = to_markdown(controls_blocks(df, [row]))
    assert "Did not train (runs the training check flagged" in md and "PRES-B1-MAX: 1 of 5 runs" in md
    # without seed 1 max is ahead by about 10 on every seed: supported; with it (25 against 62) the interval
    # reaches below 0: inconclusive
    assert row.rule_verdict == "supported" and row.rule_verdict_every_run == "inconclusive"
    assert ("Sensitivity (every completed run counted, those that did not train too, the claims rule): presence, "
            "PRES-B1-MAX vs PRES-B1-AVE: supported -> inconclusive.") in md


def test_the_claims_rule_judges_every_control_and_can_call_a_null_false():
    """On the local null a pyramid 0.5 points above the FCN on every seed: the claims rule says "supported", a
    verdict the construction rules out, and the row says so; the equivalent row is found equivalent."""
    df = _table({"LOC-FCN": FCN, "LOC-B1236-AVE-DR": [f + d / 100 for f, d in zip(FCN, [0.5, 0.6, 0.4, 0.5, 0.55],
                                                                                 strict=True)],
                 "LOC-B1-AVE": [f + d / 100 for f, d in zip(FCN, [0.05, -0.05, 0.0, 0.02, -0.02], strict=True)]})
    rows = {r.a: r for r in judge_controls(df, _comparisons(df, margin=0.5))}
    assert rows["LOC-B1236-AVE-DR"].rule_verdict == "supported" and rows["LOC-B1236-AVE-DR"].rule_as_implied == "no"
    assert rows["LOC-B1-AVE"].rule_label == "equivalent within ±0.5" and rows["LOC-B1-AVE"].rule_as_implied == "yes"
    md = to_markdown(controls_blocks(df, list(rows.values())))
    assert "| claims rule " in md and "as implied? (claims rule)" in md


def test_a_control_expected_contradicted_is_judged_so_by_both_rules():
    """Diluted presence: average pooling 1 to 2 points below max on every seed. "a beats b" with a = AVE comes
    out contradicted under the claims rule, which is what the construction implies (expected: worse)."""
    maxed = [0.70, 0.72, 0.69, 0.71, 0.70]
    df = _table({"DIL-B1-AVE": [m - d / 100 for m, d in zip(maxed, [1.0, 1.5, 2.0, 1.2, 1.8], strict=True)],
                 "DIL-B1-MAX": maxed}, {"DIL-B1-AVE": "diluted", "DIL-B1-MAX": "diluted"})
    cmp = Comparison("DIL-B1-AVE", "DIL-B1-MAX", "worse", 2.0, "specks dilute an average")
    (row,) = judge_controls(df, [cmp])
    assert row.diff == pytest.approx(-1.5) and row.p_adjusted < 0.05
    assert row.as_implied == "yes" and row.concluded == "worse by less than 2"
    assert row.rule_verdict == "contradicted" and row.rule_as_implied == "yes"
    md = to_markdown(controls_blocks(df, [row]))
    assert "b beats a (a beats b: contradicted)" in md


def test_null_gains_are_the_equivalence_rows_above_zero_largest_first():
    from types import SimpleNamespace

    from study.results.controls import null_gains

    rows = [SimpleNamespace(expected="equivalent", ci_low=0.1, diff=0.6), SimpleNamespace(expected="better", ci_low=2,
            diff=5.0), SimpleNamespace(expected="equivalent", ci_low=-0.2, diff=0.3),
            SimpleNamespace(expected="equivalent", ci_low=0.4, diff=1.5)]
    assert [r.diff for r in null_gains(rows)] == [1.5, 0.6]
