import math

import pytest

from study.results.power import detectable_effect, plan, sd_range, seeds_for, t_power


def test_power_of_the_paired_t_matches_a_textbook_value():
    assert t_power(1.0, 10, 0.05) == pytest.approx(0.8031, abs=1e-4)  # G*Power: paired t, dz = 1, n = 10
    assert seeds_for(1.0, 0.05) == 10 and seeds_for(1.0, 0.05 / 13) > 10
    assert math.isnan(seeds_for(0.0, 0.05)) and seeds_for(1e-3, 0.05) == math.inf


def test_the_detectable_effect_is_where_power_reaches_80_percent():
    e = detectable_effect(5, 0.05 / 13)
    assert t_power(e, 5, 0.05 / 13) == pytest.approx(0.8, abs=1e-6)
    assert detectable_effect(10, 0.05 / 13) < e  # more seeds detect less
    assert math.isnan(detectable_effect(1, 0.05))


def test_the_noise_range_is_the_chi_square_interval():
    lo, hi = sd_range(1.0, 5)
    assert lo == pytest.approx(math.sqrt(4 / 11.1433), rel=1e-4) and hi == pytest.approx(math.sqrt(4 / 0.48442), rel=1e-4)
    assert all(math.isnan(v) for v in sd_range(1.0, 2) + sd_range(0.0, 5))


def test_a_rows_design_figures_are_ranges_over_the_noise():
    row = plan(2.0, 5, level=0.05 / 13, planning_level=0.05 / 13, paper_diff=1.0)
    lo, hi = sd_range(2.0, 5)
    e = detectable_effect(5, 0.05 / 13)
    assert (row["detectable_low"], row["detectable_high"]) == pytest.approx((e * lo, e * hi))
    assert row["seeds_low"] == seeds_for(1 / lo, 0.05 / 13) and row["seeds_high"] == seeds_for(1 / hi, 0.05 / 13)
    assert 15 < row["seeds_high"] / row["seeds_low"] < 30  # the variance's interval at 5 seeds: a factor of ~23
    for bad in (plan(2.0, 2, level=0.01, planning_level=0.01, paper_diff=3.0),
                plan(0.0, 5, level=0.01, planning_level=0.01, paper_diff=3.0)):
        assert all(math.isnan(v) for v in bad.values())  # "not estimable"
    assert math.isnan(plan(2.0, 5, level=0.01, planning_level=0.01)["seeds_low"])  # no paper difference
