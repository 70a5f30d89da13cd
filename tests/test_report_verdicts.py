"""The verdict table prints the statistics a claim row has (nan: none), in a fixed order, core columns first."""

import math
from dataclasses import replace

from study.report.verdicts import COLUMNS, FOLDED_COLUMNS, row_digits, verdict_tables
from study.results.claims import ClaimRow

ROW = ClaimRow(claim="B1236 beats B1", better="B1236-AVE", worse="B1-AVE", n=5, diff=13.674, ci_low=12.55,
               ci_high=14.79, verdict="supported", paper_diff=1.0, prob_improvement=1.0, p_adjusted=0.0004,
               image_ci_low=11.83, image_ci_high=15.49, rule="r")


def test_a_row_with_few_statistics_prints_the_core_table_and_folds_the_rest():
    core, more = verdict_tables([ROW])
    assert core.headers == ["claim", "better vs worse", "seeds", "Δ mIoU", "seed 95% CI", "verdict", "paper Δ"]
    # the half-width 1.12 is 1 to 10 points: one decimal
    assert core.rows == [["B1236 beats B1", "B1236-AVE vs B1-AVE", "5", "+13.7", "[12.6, 14.8]", "supported", "+1.00"]]
    assert more.fold == "More per claim: P(improvement), p (Holm), image-level 95% CI"
    assert more.rows == [["B1236 beats B1", "B1236-AVE vs B1-AVE", "1.00", "< 0.001", "[11.8, 15.5]"]]


def test_richer_rows_gain_columns_split_into_parts():
    row = replace(ROW, sd=0.9, df=24, confidence=0.9962, prob_improvement_low=0.57, prob_improvement_high=1.0,
                  detectable_low=1.1, detectable_high=5.3, seeds_low=3, seeds_high=math.inf, two_level_ci_low=10.0,
                  two_level_ci_high=17.0, untrained={"B1236-AVE": (0, 5, 0.0, 0.43), "B1-AVE": (2, 5, 0.12, 0.77)})
    core, *folded = verdict_tables([row])
    assert core.headers[4] == "interval (99.62%)" and core.rows[0][3] == "+13.67"  # sd 0.9: two decimals
    headers = [h for t in folded for h in t.headers[2:]]
    assert headers == ["P(improvement)", "p (Holm)", "noise: sd of Δ (df)", "level", "detectable Δ (80% power)",
                       "seeds for the paper's Δ", "two-level 95% CI", "image-level 95% CI", "did not train [95%]"]
    assert all(len(t.headers) <= 2 + FOLDED_COLUMNS for t in folded)
    cells = dict(zip(headers, [c for t in folded for c in t.rows[0][2:]], strict=True))
    assert cells["P(improvement)"] == "1.00 [0.57, 1.00]" and cells["noise: sd of Δ (df)"] == "0.90 (24)"
    assert cells["seeds for the paper's Δ"] == "3 to > 10000" and cells["detectable Δ (80% power)"] == "1.1 to 5.3"
    assert cells["did not train [95%]"] == "B1-AVE: 2 of 5 [12, 77]%"


def test_rows_at_different_holm_levels_print_each_row_s_level():
    rows = [replace(ROW, confidence=0.9962), replace(ROW, better="B1236-MAX", confidence=0.9833)]
    core, *_ = verdict_tables(rows)
    assert core.headers[4] == "interval (at its row's level)" and core.headers[-1] == "level"
    assert [r[-1] for r in core.rows] == ["99.62%", "98.33%"]


def test_empty_columns_hide():
    row = replace(ROW, p_adjusted=math.nan, paper_diff=math.nan, image_ci_low=math.nan, image_ci_high=math.nan)
    core, more = verdict_tables([row])
    assert "paper Δ" not in core.headers
    assert more.headers == ["claim", "better vs worse", "P(improvement)"]
    assert row_digits(replace(ROW, ci_low=math.nan, ci_high=math.nan)) == 2
    assert {c.header for c in COLUMNS if c.core} == {"claim", "better vs worse", "seeds", "Δ mIoU", "interval",
                                                     "verdict", "size (vs ±m)", "paper Δ", "paper Δ excluded",
                                                     "registered"}
    assert {"size (vs ±m)", "paper Δ excluded", "registered"}.isdisjoint(core.headers)  # no m, no paper, none late


def test_claims_no_pair_isolates_are_named_not_dropped(tmp_path):
    from fabricate import fabricate

    from study.report.blocks import to_markdown
    from study.report.verdicts import claim_blocks
    from study.results.claims import judge_claims
    from study.results.table import build_table

    df = build_table(fabricate(tmp_path, {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.56, 0.57, 0.58]}))
    md = to_markdown(claim_blocks(judge_claims(df), tmp_path))
    assert ("No pair of variants in this study isolates: the pyramid beats the capacity-matched FCN; B1236 beats B1; AVE "
            "beats MAX; DR helps; aux 0.4 beats "
            "none; deeper is better; augmentation helps.") in md
