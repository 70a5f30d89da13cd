import math

import numpy as np
import pytest
from fabricate import claim_pairs, fabricate  # noqa: I001
from scipy import stats

from study.results.claims import CLAIMS, find_pairs, judge_claims, load_paper_table
from study.results.stats import decide, holm, prob_improvement, seeds_needed, summarize
from study.results.table import build_table


def test_summary_uses_the_t_interval():
    s = summarize([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n)
    assert s["ci_low"] == pytest.approx(2 - half) and s["ci_high"] == pytest.approx(2 + half)
    assert math.isnan(summarize([1.0])["ci_low"])


def one_pair(better: dict[int, float], worse: dict[int, float]) -> dict:
    """The rule's row for a study of two variants (seeds -> value; a seed one lacks is missing): its own paired t."""
    seeds = sorted({*better, *worse})
    y = np.array([[runs.get(s, math.nan) for s in seeds] for runs in (better, worse)])
    return decide(y, [(0, 1)])[0]


@pytest.mark.parametrize("better, worse, expected", [
    ({0: 0.60, 1: 0.62, 2: 0.61}, {0: 0.50, 1: 0.51, 2: 0.52}, "supported"),
    ({0: 0.40, 1: 0.42, 2: 0.41}, {0: 0.50, 1: 0.51, 2: 0.52}, "contradicted"),
    ({0: 0.55, 1: 0.45, 2: 0.52}, {0: 0.50, 1: 0.51, 2: 0.50}, "inconclusive"),
    ({0: 0.51, 1: 0.53, 2: 0.60}, {0: 0.50, 1: 0.51, 2: 0.50}, "inconclusive"),  # mean > 0 but p = 0.27
    ({0: 0.60, 1: 0.62}, {0: 0.50, 1: 0.51}, "too few seeds"),
    ({0: 0.60, 1: 0.62, 5: 0.7}, {0: 0.50, 1: 0.51, 2: 0.4}, "too few seeds"),  # only 2 shared seeds
])
def test_verdicts(better, worse, expected):
    row = one_pair(better, worse)
    assert row["verdict"] == expected and not row["pooled"]
    if expected != "too few seeds":
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]


def test_paired_difference_numbers_are_deterministic():
    a = one_pair({0: 0.6, 1: 0.7, 2: 0.65}, {0: 0.5, 1: 0.55, 2: 0.6})
    assert a["diff"] == pytest.approx((0.1 + 0.15 + 0.05) / 3) and a["n"] == 3
    assert a == one_pair({0: 0.6, 1: 0.7, 2: 0.65}, {0: 0.5, 1: 0.55, 2: 0.6})
    same = one_pair({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert same["ci_low"] == pytest.approx(0.1) and same["verdict"] == "supported"


def test_pairs_differ_only_in_the_claims_axis(tmp_path):
    df = build_table(fabricate(tmp_path, {v: [0.5] for v in
                                          ["FCN", "B1-MAX", "B1-AVE", "B1236-MAX", "B1236-AVE", "B1236-AVE-DR"]}))
    by_name = {c.name: c for c in CLAIMS}
    assert find_pairs(df, by_name["B1236 beats B1"]) == [("B1236-MAX", "B1-MAX"), ("B1236-AVE", "B1-AVE")]
    assert find_pairs(df, by_name["AVE beats MAX"]) == [("B1-AVE", "B1-MAX"), ("B1236-AVE", "B1236-MAX")]
    assert find_pairs(df, by_name["DR helps"]) == [("B1236-AVE-DR", "B1236-AVE")]
    assert ("B1236-AVE-DR", "FCN") in find_pairs(df, by_name["PPM beats the FCN baseline"])
    assert find_pairs(df, by_name["aux 0.4 beats none"]) == []


def test_table1_claim_rows_by_hand():
    """FCN, B1-MAX, B1-AVE, B1236-MAX, B1236-AVE, B1236-MAX-DR, B1236-AVE-DR (the calibration tests' rows)."""
    assert claim_pairs() == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0),  # PPM beats the FCN baseline
                             (3, 1), (4, 2),  # B1236 beats B1
                             (2, 1), (4, 3), (6, 5),  # AVE beats MAX
                             (5, 3), (6, 4)]  # DR helps


def test_claims_carry_the_papers_difference(tmp_path):
    df = build_table(fabricate(tmp_path, {"FCN": [0.50, 0.52, 0.51], "B1236-AVE-DR": [0.60, 0.61, 0.63],
                                          "B1236-AVE": [0.62, 0.60, 0.64]}))
    rows = judge_claims(df, load_paper_table("table1"))
    ppm = next(r for r in rows if r["claim"] == "PPM beats the FCN baseline" and r["better"] == "B1236-AVE-DR")
    assert ppm["verdict"] == "supported" and ppm["n"] == 3
    assert ppm["diff"] == pytest.approx(100 * (0.10 + 0.09 + 0.12) / 3)
    assert ppm["paper_diff"] == pytest.approx(41.68 - 37.23)
    dr = next(r for r in rows if r["claim"] == "DR helps")
    assert dr["paper_diff"] == pytest.approx(41.68 - 41.07) and dr["verdict"] == "inconclusive"


def test_holm_adjusts_step_down_and_keeps_nan_out_of_the_family():
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted[3] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted[1] == pytest.approx(0.06)  # 1 x 0.04, raised to the running max
    assert math.isnan(adjusted[2])


def test_probability_of_improvement_counts_pairs_of_runs_with_half_ties():
    assert prob_improvement([3, 4], [1, 2]) == 1.0
    assert prob_improvement([1, 3], [2]) == 0.5
    assert prob_improvement([2, 2], [2, 1]) == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)


def test_seeds_needed_matches_the_t_power():
    assert math.isnan(seeds_needed(0.0, 1.0, 0.05))
    n = seeds_needed(1.0, 1.0, 0.05)  # paired t, d / sd = 1: 10 seeds give 80% power (G*Power: n = 10)
    assert n == 10


def test_bounded_intervals_are_clipped():
    s = summarize([99.0, 99.5, 100.0], bounds=(0.0, 100.0))
    assert s["ci_high"] == 100.0 and s["ci_low"] == pytest.approx(99.5 - 4.302652729911275 * 0.5 / math.sqrt(3))


def test_pooled_rule_numbers_by_hand():
    # 3 variants x 3 seeds; two-way residuals give sigma^2 = SS / ((3-1)(3-1))
    y = np.array([[50.0, 52, 51], [60, 61, 63], [62, 60, 64]])
    r = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    var = (r ** 2).sum() / 4
    rows = decide(y, [(1, 0), (2, 0), (1, 2)])
    se = math.sqrt(2 * var / 3)
    assert rows[0]["pooled"] and rows[0]["df"] == 4 and rows[0]["diff"] == pytest.approx(31 / 3)
    assert rows[0]["p_value"] == pytest.approx(2 * stats.t.sf((31 / 3) / se, 4))
    assert rows[0]["ci_high"] - rows[0]["diff"] == pytest.approx(stats.t.ppf(0.975, 4) * se)
    ps = sorted(r["p_value"] for r in rows)
    assert min(r["p_adjusted"] for r in rows) == pytest.approx(3 * ps[0])
    assert rows[2]["verdict"] == "inconclusive" and rows[2]["seeds_needed"] > 3


def test_judge_claims_rows_carry_every_field(tmp_path):
    df = build_table(fabricate(tmp_path, {"FCN": [0.50, 0.52, 0.51], "B1236-AVE-DR": [0.60, 0.61, 0.63],
                                          "B1236-AVE": [0.62, 0.60, 0.64]}))
    rows = judge_claims(df, load_paper_table("table1"))
    dr = next(r for r in rows if r["claim"] == "DR helps")
    assert dr["diff"] == pytest.approx(-2 / 3) and dr["prob_improvement"] == pytest.approx(3.5 / 9)
    assert dr["verdict"] == "inconclusive" and dr["seeds_needed"] >= 10
    assert math.isnan(dr["image_ci_low"])  # no per-image counts in these records
    assert all(r["p_adjusted"] >= r["p_value"] for r in rows) and "Holm" in dr["rule"] and "3 claim rows" in dr["rule"]
