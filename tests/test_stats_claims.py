import math

import numpy as np
import pandas as pd
import pytest
from fabricate import fabricate  # noqa: I001
from scipy import stats

from study.results.claims import CLAIMS, find_pairs, judge_claims, load_paper_table
from study.results.sequential import SequentialPlan
from study.results.stats import (
    decide,
    holm,
    holm_levels,
    paired_improvement,
    paired_t,
    summarize,
    t_interval,
    wilson,
)
from study.results.table import build_table


def test_summary_uses_the_t_interval():
    s = summarize([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n)
    assert s["ci_low"] == pytest.approx(2 - half) and s["ci_high"] == pytest.approx(2 + half)
    assert math.isnan(summarize([1.0])["ci_low"])


def test_bounded_intervals_are_clipped():
    s = summarize([99.0, 99.5, 100.0], bounds=(0.0, 100.0))
    assert s["ci_high"] == 100.0 and s["ci_low"] == pytest.approx(99.5 - 4.302652729911275 * 0.5 / math.sqrt(3))


def test_paired_t_by_hand():
    t = paired_t(np.array([1.0, 0.5, 1.0]))
    sd = math.sqrt(((1 - 2.5 / 3) ** 2 * 2 + (0.5 - 2.5 / 3) ** 2) / 2)
    assert t["n"] == 3 and t["df"] == 2 and t["sd"] == pytest.approx(sd)
    assert t["p_value"] == pytest.approx(2 * stats.t.sf((2.5 / 3) / (sd / math.sqrt(3)), 2))
    assert math.isnan(paired_t(np.array([1.0, 2.0]))["p_value"])  # under MIN_SEEDS: no test
    assert paired_t(np.array([0.1, 0.1, 0.1]))["p_value"] == 0.0  # no spread, a difference: exact


@pytest.mark.parametrize("better, worse, expected", [
    ([60, 62, 61], [50, 51, 52], "supported"),
    ([40, 42, 41], [50, 51, 52], "contradicted"),
    ([55, 45, 52], [50, 51, 50], "inconclusive"),
    ([51, 53, 60], [50, 51, 50], "inconclusive"),  # mean > 0 but p = 0.27
    ([60, 62, np.nan], [50, 51, 52], "too few seeds"),
])
def test_verdicts_of_one_pair(better, worse, expected):
    row = decide(np.array([better, worse], dtype=float), [(0, 1)])[0]
    assert row["verdict"] == expected
    if expected != "too few seeds":
        assert row["ci_low"] <= row["diff"] <= row["ci_high"] and row["confidence"] == pytest.approx(0.95)
    else:
        assert row["n"] == 2 and math.isnan(row["p_adjusted"]) and math.isnan(row["ci_low"])


def test_holm_adjusts_step_down_and_keeps_nan_out_of_the_family():
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted[3] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted[1] == pytest.approx(0.06)  # 1 x 0.04, raised to the running max
    assert math.isnan(adjusted[2])


def test_holm_levels_are_the_steps_holm_tested_at():
    _, levels = holm_levels([0.01, 0.04, math.nan, 0.03])
    # 0.01 rejected at step 1 (0.05/3); 0.03 fails at step 2 (0.05/2): both unrejected rows get 0.05/2
    assert levels[0] == pytest.approx(0.05 / 3) and levels[1] == levels[3] == pytest.approx(0.025)
    assert math.isnan(levels[2])
    adjusted, levels = holm_levels([0.001, 0.004, 0.2])
    assert adjusted[:2] == pytest.approx([0.003, 0.008]) and levels == pytest.approx([0.05 / 3, 0.025, 0.05])


def test_intervals_exclude_zero_exactly_for_decided_rows_by_hand():
    # three pairs against row 0; p-values by hand decide which Holm step each was tested at
    y = np.array([[0, 0, 0, 0, 0], [3, 2, 4, 3, 2.5], [0.5, -0.3, 1.2, 0.1, 0.4], [9, 10, 11, 10, 9.5]])
    rows = decide(y, [(1, 0), (2, 0), (3, 0)])
    ps = [paired_t(y[i] - y[0])["p_value"] for i in (1, 2, 3)]
    adjusted, levels = holm_levels(ps)
    for row, p_adj, level, i in zip(rows, adjusted, levels, (1, 2, 3), strict=True):
        assert row["p_adjusted"] == pytest.approx(p_adj) and row["confidence"] == pytest.approx(1 - level)
        d = y[i] - y[0]
        lo, hi = t_interval(d.mean(), d.std(ddof=1) / math.sqrt(5), 4, 1 - level)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
        assert (row["verdict"] != "inconclusive") == (lo > 0 or hi < 0)
    assert [r["verdict"] for r in rows] == ["supported", "inconclusive", "supported"]


def test_each_row_uses_only_its_own_noise():
    """No pooling: a far noisier third variant changes neither the p nor the interval of a row without it."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 5)) + np.array([[1.0], [0.0]])
    alone = decide(y, [(0, 1)])[0]
    noisy = np.vstack([y, 30 * rng.normal(size=(1, 5))])
    beside = decide(noisy, [(0, 1), (2, 1)])[0]
    assert beside["p_value"] == alone["p_value"] and beside["sd"] == alone["sd"] and beside["df"] == 4


def test_the_same_t_method_at_every_seed_count():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 12)) + np.array([[1.0], [0.0]])
    row = decide(y, [(0, 1)])[0]
    d = y[0] - y[1]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(t_interval(d.mean(), d.std(ddof=1) / math.sqrt(12), 11))


def test_looks_bonferroni_split_and_the_deciding_look_is_shown():
    y = np.array([[1.0, 1.2, 0.9, 1.1, 1.0, 0.95], [0.0] * 6])
    plan = SequentialPlan(first=3, step=3, max_seeds=6)
    rows = decide(y, [(0, 1)], looks=plan.looks, spend=plan.shares)
    p1, p2 = paired_t(y[0, :3])["p_value"], paired_t(y[0])["p_value"]
    assert rows[0]["p_value"] == pytest.approx(min(1, 2 * min(p1, p2))) and rows[0]["looks"] == 2
    assert rows[0]["look"] == 2 and rows[0]["columns"] == list(range(6)) and rows[0]["confidence"] == 0.975
    unfinished = np.ones_like(y, dtype=bool)
    unfinished[1, 5] = False  # the second look waits for its last run
    row = decide(y, [(0, 1)], looks=plan.looks, spend=plan.shares, finished=unfinished)[0]
    assert row["looks"] == 1 and row["n"] == 3 and row["p_value"] == pytest.approx(2 * p1)
    with pytest.raises(ValueError, match="spend"):
        decide(y, [(0, 1)], looks=plan.looks, spend=(0.7, 0.7))


def test_wilson_interval_by_hand():
    z = stats.norm.isf(0.025)
    lo, hi = wilson(0, 5)
    assert lo == 0.0 and hi == pytest.approx(z * z / 5 / (1 + z * z / 5))  # k = 0: upper = z^2/n / (1 + z^2/n)
    assert wilson(5, 5) == pytest.approx((1 - hi, 1.0))
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_paired_improvement_counts_seeds_with_half_ties():
    share, lo, hi = paired_improvement(np.array([1.0, -1.0, 0.0, 2.0]))
    assert share == pytest.approx(2.5 / 4) and (lo, hi) == pytest.approx(wilson(2.5, 4))
    assert math.isnan(paired_improvement(np.zeros(0))[0])


def test_pairs_differ_only_in_the_claims_axis(tmp_path):
    df = build_table(fabricate(tmp_path, {v: [0.5] for v in
                                          ["FCN", "B1-MAX", "B1-AVE", "B1236-MAX", "B1236-AVE", "B1236-AVE-DR"]}))
    by_name = {c.name: c for c in CLAIMS}
    assert find_pairs(df, by_name["B1236 beats B1"]) == [("B1236-MAX", "B1-MAX"), ("B1236-AVE", "B1-AVE")]
    assert find_pairs(df, by_name["AVE beats MAX"]) == [("B1-AVE", "B1-MAX"), ("B1236-AVE", "B1236-MAX")]
    assert find_pairs(df, by_name["DR helps"]) == [("B1236-AVE-DR", "B1236-AVE")]
    assert ("B1236-AVE-DR", "FCN") in find_pairs(df, by_name["PPM beats the FCN baseline"])
    assert find_pairs(df, by_name["aux 0.4 beats none"]) == []


MIOU = {"FCN": [0.50, 0.52, 0.51], "B1236-AVE-DR": [0.60, 0.61, 0.63], "B1236-AVE": [0.62, 0.60, 0.64]}


def test_claims_carry_the_papers_difference(tmp_path):
    rows = judge_claims(build_table(fabricate(tmp_path, MIOU)), load_paper_table("table1"))
    ppm = next(r for r in rows if r.claim == "PPM beats the FCN baseline" and r.better == "B1236-AVE-DR")
    assert ppm.verdict == "supported" and ppm.n == 3 and ppm.seeds == (0, 1, 2)
    assert ppm.diff == pytest.approx(100 * (0.10 + 0.09 + 0.12) / 3)
    assert ppm.paper_diff == pytest.approx(41.68 - 37.23)
    dr = next(r for r in rows if r.claim == "DR helps")
    assert dr.paper_diff == pytest.approx(41.68 - 41.07) and dr.verdict == "inconclusive"


def test_judge_claims_rows_carry_every_field(tmp_path):
    rows = judge_claims(build_table(fabricate(tmp_path, MIOU)), load_paper_table("table1"))
    dr = next(r for r in rows if r.claim == "DR helps")
    assert dr.diff == pytest.approx(-2 / 3) and dr.prob_improvement == pytest.approx(1 / 3)  # 1 of 3 seeds
    assert (dr.prob_improvement_low, dr.prob_improvement_high) == pytest.approx(wilson(1, 3))
    assert dr.verdict == "inconclusive" and dr.df == 2 and dr.sd == pytest.approx(np.std([-2, 1, -1], ddof=1))
    assert dr.ci_low < 0 < dr.ci_high and dr.confidence >= 0.95
    assert dr.detectable_low < dr.detectable_high and dr.seeds_low < dr.seeds_high
    assert math.isnan(dr.image_ci_low) and math.isnan(dr.two_level_ci_low)  # no per-image counts
    assert dr.untrained == {"B1236-AVE-DR": (0, 3, 0.0, pytest.approx(wilson(0, 3)[1])),
                               "B1236-AVE": (0, 3, 0.0, pytest.approx(wilson(0, 3)[1]))}
    assert all(r.p_adjusted >= r.p_value for r in rows) and "Holm" in dr.rule and "3 claim rows" in dr.rule


def test_verdicts_count_the_runs_that_trained_and_every_completed_run_is_the_sensitivity(tmp_path):
    miou = {"FCN": [0.50, 0.52, 0.51, 0.50, 0.49], "B1-AVE": [0.60, 0.20, 0.61, 0.59, 0.62]}
    df = build_table(fabricate(tmp_path, miou))
    df["trained"] = [True] * 5 + [True, False, True, True, True]  # B1-AVE seed 1 never left the plateau
    row = judge_claims(df)[0]
    assert row.n == 4 and row.seeds == (0, 2, 3, 4) and row.verdict == "supported"
    assert row.diff == pytest.approx(100 * np.mean([0.10, 0.10, 0.09, 0.13]))
    assert "on the seeds on which both runs trained" in row.rule
    assert row.untrained["B1-AVE"] == pytest.approx((1, 5, *wilson(1, 5)))
    assert row.untrained["FCN"][:2] == (0, 5)
    # 1 of 5 against 0 of 5: Fisher's exact p is 1 (one row with a stall: Holm over one)
    assert row.stall_p == pytest.approx(1.0) and row.stalls_more == ""
    every = judge_claims(df, exclude_untrained=False)[0]
    assert every.n == 5 and every.seeds == (0, 1, 2, 3, 4) and every.verdict == "inconclusive"
    assert every.diff == pytest.approx(100 * np.mean([0.10, -0.32, 0.10, 0.09, 0.13]))
    assert "on every completed run" in every.rule
    from study.report.verdicts import sensitivity_text

    assert sensitivity_text([row], [every]) == ("Sensitivity (every completed run counted, those that did not train "
                                                "too, the same rule): PPM beats the FCN baseline, B1-AVE vs FCN: "
                                                "supported -> inconclusive (Δ +2, 5 seeds).")
    assert sensitivity_text([row], [row]).endswith("no verdict moves.")
    df["trained"] = pd.Series([None] * 10, dtype=object)  # no value: trained (records from before the flag)
    assert judge_claims(df)[0].n == 5
    df["trained"] = pd.array([True] * 6 + [False, pd.NA, True, True], dtype="boolean")  # as parquet reads it back
    assert judge_claims(df)[0].seeds == (0, 2, 3, 4)


def test_stall_rates_are_compared_as_their_own_outcome(tmp_path):
    miou = {"FCN": [0.50 + 0.01 * i for i in range(12)], "B1-MAX": [0.60 + 0.01 * i for i in range(12)]}
    df = build_table(fabricate(tmp_path, miou))
    df["trained"] = [True] * 12 + [False] * 8 + [True] * 4  # B1-MAX stalls on 8 of 12 seeds, the FCN on none
    row = judge_claims(df)[0]
    assert row.n == 4 and row.untrained["B1-MAX"][:2] == (8, 12)
    # Fisher's exact two-sided p of [[8, 4], [0, 12]]: C(12,8) C(12,0) / C(24,8) doubled by symmetry of the tails
    from math import comb

    one_tail = sum(comb(12, k) * comb(12, 8 - k) for k in range(8, 9)) / comb(24, 8)
    assert row.stall_p == pytest.approx(2 * one_tail) and row.stalls_more == "B1-MAX"


def test_size_readings_against_the_smallest_difference_of_interest():
    from study.results.claims import excludes, size_reading

    cases = {(0.6, 2.0): "better by at least 0.5", (-3.0, -0.5): "worse by at least 0.5",
             (0.1, 0.4): "better by less than 0.5", (-0.48, -0.06): "worse by less than 0.5",
             (0.1, 0.9): "better by an unknown amount", (-0.9, -0.1): "worse by an unknown amount",
             (-0.27, 0.15): "equivalent within ±0.5", (-1.6, 0.41): "not better by 0.5 or more",
             (-0.2, 1.0): "not worse by 0.5 or more", (-1.0, 1.0): "inconclusive"}
    for (lo, hi), reading in cases.items():
        assert size_reading(lo, hi, 0.5) == reading, (lo, hi)
    assert size_reading(0.1, 0.4, None) == "" and size_reading(math.nan, 1.0, 0.5) == ""
    assert excludes(-0.27, 0.15, 0.13) is False and excludes(-1.6, 0.41, 2.7) is True
    assert excludes(-1.0, 1.0, math.nan) is None


def test_rows_carry_their_size_reading_and_whether_they_exclude_the_paper(tmp_path):
    miou = {"FCN": [0.50, 0.52, 0.51, 0.50, 0.49], "B1-AVE": [0.505, 0.525, 0.515, 0.505, 0.495]}
    df = build_table(fabricate(tmp_path, miou))
    paper = pd.DataFrame({"variant": ["FCN", "B1-AVE"], "miou": [37.23, 40.07], "pixel_acc": [78.0, 79.5]})
    row = judge_claims(df, paper, margin=1.0)[0]
    # every difference is +0.5 points: sd 0, interval [0.5, 0.5], decided, inside (0, 1): better by less than 1
    assert row.verdict == "supported" and row.size == "better by less than 1"
    assert row.paper_diff == pytest.approx(2.84) and row.paper_excluded is True
    assert judge_claims(df, paper)[0].size == ""  # no m, no reading
    from study.report.conclusion import claim_line, claim_summaries

    line = claim_line(row)
    assert line.startswith("**supported** (better by less than 1): PPM beats the FCN baseline, B1-AVE vs FCN")
    assert "(paper: +2.84, excluded)" in line
    (summary,) = claim_summaries([row])
    assert summary.startswith("PPM beats the FCN baseline (1 row): 1 supported; read against ±m: 1 better by less "
                              "than 1; its interval ends below +0.6")
    assert summary.endswith("the paper's difference is excluded by 1 of 1 row.")


def test_a_claim_summary_bounds_the_gain_only_by_every_rows_interval():
    from study.report.conclusion import claim_summaries
    from study.results.claims import ClaimRow

    def row(lo, hi):
        return ClaimRow("PPM beats the FCN baseline", "B", "FCN", "inconclusive", diff=(lo + hi) / 2, ci_low=lo,
                        ci_high=hi, paper_diff=2.7, paper_excluded=hi < 2.7)
    (text,) = claim_summaries([row(-1.0, 0.41), row(-0.5, 1.15)])
    assert "2 inconclusive" in text and "no row shows a gain of 1.2 points or more" in text
    assert text.endswith("excluded by 2 of 2 rows.")
    (text,) = claim_summaries([row(-1.0, 0.41), row(-0.5, 2.95)])
    assert "3.0 points or more" in text and "excluded by 1 of 2 rows" in text


def test_a_plan_tests_at_its_looks(tmp_path):
    miou = {"FCN": [0.50, 0.52, 0.51, 0.50, 0.49, 0.50], "B1-AVE": [0.51, 0.50, 0.53, 0.52, 0.50, 0.53]}
    df = build_table(fabricate(tmp_path, miou))
    plan = SequentialPlan(first=3, step=3, max_seeds=9)
    row = judge_claims(df, plan=plan)[0]
    assert row.looks == 2 and row.planned_looks == 3 and row.verdict == "inconclusive"
    assert row.n == 6 and "3 seeds: 0.333" in row.rule


def test_an_inconclusive_row_inside_the_margin_reads_equivalent():
    from study.results.claims import equivalence
    from study.results.stats import Verdict

    assert equivalence(Verdict.INCONCLUSIVE, -0.3, 0.4, 0.5) is Verdict.EQUIVALENT
    assert Verdict.EQUIVALENT.label(0.5) == "equivalent within ±0.5"
    assert equivalence(Verdict.INCONCLUSIVE, -0.6, 0.4, 0.5) is Verdict.INCONCLUSIVE  # the margin's size not excluded
    assert equivalence(Verdict.INCONCLUSIVE, -0.3, 0.4, None) is Verdict.INCONCLUSIVE  # no margin in the study file
    assert equivalence(Verdict.SUPPORTED, 0.1, 0.4, 0.5) is Verdict.SUPPORTED  # a decided row keeps its verdict
    assert Verdict.read("equivalent within ±2") is Verdict.EQUIVALENT and Verdict.read("too few seeds").decided is False


def test_the_claims_rule_reads_equivalent_through_the_study_margin(tmp_path):
    base = [0.50, 0.52, 0.49, 0.51, 0.50, 0.53, 0.48, 0.50]
    noise = [0.0005, -0.0007, 0.0010, -0.0002, 0.0004, -0.0006, 0.0003, 0.0001]
    df = build_table(fabricate(tmp_path, {"FCN": base, "B1236-AVE-DR": [b + n for b, n in zip(base, noise, strict=True)]}))
    row = judge_claims(df, margin=0.5)[0]
    assert row.claim == "PPM beats the FCN baseline" and -0.5 < row.ci_low < row.ci_high < 0.5
    assert row.verdict == "equivalent" and row.label == "equivalent within ±0.5" and row.margin == 0.5
    assert judge_claims(df)[0].verdict == "inconclusive"


def test_the_capacity_matched_fcn_is_compared_with_its_pyramid_not_counted_as_one(tmp_path):
    variants = {"FCN": {"model.ppm": False},
                "B1236-AVE-DR": {"model.bins": [1, 2, 3, 6], "model.pool": "avg", "model.reduction": True},
                "FCN-CAP-DR": {"model.bins": [1, 2, 3, 6], "model.pool": "none", "model.reduction": True}}
    df = build_table(fabricate(tmp_path, {"FCN": [0.5, 0.51, 0.52], "B1236-AVE-DR": [0.6, 0.61, 0.6],
                                          "FCN-CAP-DR": [0.52, 0.5, 0.53]}, variants=variants))
    rows = {(r.claim, r.better, r.worse) for r in judge_claims(df)}
    assert rows == {("PPM beats the FCN baseline", "B1236-AVE-DR", "FCN"),
                    ("the pyramid beats the capacity-matched FCN", "B1236-AVE-DR", "FCN-CAP-DR")}


def test_the_papers_rows_are_matched_on_axis_values_not_names(tmp_path):
    from study.results.claims import match_paper

    variants = {"baseline": {"model.ppm": False},
                "pyramid-4": {"model.bins": [1, 2, 3, 6], "model.pool": "avg", "model.reduction": True},
                "one-bin-max": {"model.bins": [1], "model.pool": "max", "model.reduction": False}}
    df = build_table(fabricate(tmp_path, {"baseline": [0.5, 0.51, 0.52], "pyramid-4": [0.6, 0.61, 0.62],
                                          "one-bin-max": [0.55, 0.56, 0.57]}, variants=variants))
    paper = load_paper_table("table1")
    assert match_paper(paper, df) == {"baseline": "FCN", "pyramid-4": "B1236-AVE-DR", "one-bin-max": "B1-MAX"}
    row = next(r for r in judge_claims(df, paper) if r.better == "pyramid-4" and r.worse == "baseline")
    assert row.paper_diff == pytest.approx(41.68 - 37.23)


def test_rows_of_a_variant_added_after_runs_had_ended_say_so(tmp_path):
    miou = {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.55, 0.56, 0.57], "B1236-AVE": [0.60, 0.61, 0.62]}
    df = build_table(fabricate(tmp_path, miou))
    rows = {r.key[1:]: r for r in judge_claims(df, added_after={"B1236-AVE": 6})}
    assert rows[("B1236-AVE", "FCN")].added_after == 6 and rows[("B1236-AVE", "B1-AVE")].added_after == 6
    assert rows[("B1-AVE", "FCN")].added_after is None
    from study.report.conclusion import claim_line

    assert claim_line(rows[("B1236-AVE", "FCN")]).endswith(
        "a variant of this row entered the study file after 6 runs had ended.")
