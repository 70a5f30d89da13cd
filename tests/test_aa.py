"""A/A through the claims rule (study.results.aa) and its report section, on hand-computed cases."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.config import ConfigError
from study.manifest import parse_aa
from study.report.aa_block import aa_blocks, aa_line, resampled_line
from study.report.blocks import to_markdown
from study.results.aa import clopper_pearson, false_verdicts, judge_aa, noise_sources, resampled_level
from study.results.images import image_variance
from study.results.stats import decide
from study.search.space import load_study

A = [0.80, 0.81, 0.79, 0.70, 0.72, 0.71, 0.75]
# points: group 0-2 differs by 1.0, 1.1, 0.9 (a twin 1 point worse: a false verdict); group 3-5 by 0.5, -0.5, 0
B = [0.79, 0.799, 0.781, 0.695, 0.725, 0.71, 0.74]
T_975_DF2 = 4.302653  # t table, two-sided 95% at 2 degrees of freedom


def _table(**values: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "seed": s, "status": "completed", "miou": x}
                         for v, xs in values.items() for s, x in enumerate(xs)])


def test_groups_are_judged_by_the_claims_rule_by_hand():
    aa = judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3})
    first, second = aa["groups"]
    assert first.seeds == (0, 1, 2) and second.seeds == (3, 4, 5) and aa["leftover"] == [6]
    # Δ = 1.0, 1.1, 0.9: mean 1, sd 0.1; t = 1 / (0.1 / sqrt 3) = 17.32 on 2 df; two-sided p = 1 - t / sqrt(t^2 + 2)
    t = 1 / (0.1 / math.sqrt(3))
    assert first.diff == pytest.approx(1.0) and first.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert first.confidence == pytest.approx(0.95)  # a family of one: Holm's level is alpha itself
    assert first.ci_low == pytest.approx(1 - T_975_DF2 * 0.1 / math.sqrt(3), abs=1e-6)
    assert first.verdict == "supported" and first.false
    assert second.verdict == "inconclusive" and not second.false
    assert (aa["false"], aa["n"], aa["rate"], aa["equivalent"]) == (1, 2, 0.5, 0)
    # Clopper-Pearson for 1 of 2: [1 - 0.975^(1/2), 0.975^(1/2)]
    assert (aa["rate_low"], aa["rate_high"]) == pytest.approx((1 - 0.975 ** 0.5, 0.975 ** 0.5))


def test_the_study_margin_reads_a_tight_group_as_equivalent():
    # group 3-5: Δ = 0.5, -0.5, 0; sd 0.5, interval ±4.303 x 0.2887 = ±1.242, inside ±2 but not ±1
    assert judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3}, margin=2)["groups"][1].label \
        == "equivalent within ±2"
    aa = judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3}, margin=1)
    assert aa["groups"][1].verdict == "inconclusive" and aa["equivalent"] == 0


def test_untrained_runs_count_and_missing_runs_leave_the_groups():
    df = _table(A=A, B=B)
    df["trained"] = [True] * 7 + [False] + [True] * 6  # B seed 0 did not train: it still counts
    assert [list(g.seeds) for g in judge_aa(df, {"a": "A", "b": "B", "seeds_per_group": 3})["groups"]] == [[0, 1, 2],
                                                                                                      [3, 4, 5]]
    aa = judge_aa(df[df.index != 7], {"a": "A", "b": "B", "seeds_per_group": 3})  # B seed 0 never completed
    assert [list(g.seeds) for g in aa["groups"]] == [[1, 2, 3], [4, 5, 6]] and aa["leftover"] == []
    empty = judge_aa(_table(A=A[:2], B=B[:2]), {"a": "A", "b": "B", "seeds_per_group": 3})
    assert empty["n"] == 0 and math.isnan(empty["rate"]) and "no group of 3" in aa_line(empty)


def test_planned_groups_wait_for_their_runs_and_never_regroup():
    """With the study file's seeds the groups are fixed before any run: a group missing a run waits, and the
    groups after it keep their seeds."""
    df = _table(A=A, B=B)
    aa = judge_aa(df[df.index != 7], {"a": "A", "b": "B", "seeds_per_group": 3}, planned=range(9))
    assert [list(g.seeds) for g in aa["groups"]] == [[3, 4, 5]]
    assert aa["waiting"] == [[0, 1, 2], [6, 7, 8]] and aa["planned"] == 3 and aa["leftover"] == []
    assert (aa["n"], aa["false"]) == (1, 0)
    md = to_markdown(aa_blocks(aa))
    assert "1 disjoint groups of 3 seeds of 3 planned, the others waiting for runs" in md
    assert "Waiting for runs: 2 planned groups (seeds 0-2, 6-8), each judged once both variants have all its seeds" in md
    done = judge_aa(df, {"a": "A", "b": "B", "seeds_per_group": 3}, planned=range(7))
    assert done["waiting"] == [] and done["leftover"] == [6] and "planned" not in aa_line(done)


def test_clopper_pearson_by_hand():
    assert clopper_pearson(0, 36)[1] == pytest.approx(1 - 0.025 ** (1 / 36))  # the upper end at k = 0
    assert clopper_pearson(36, 36)[0] == pytest.approx(0.025 ** (1 / 36))
    assert all(math.isnan(x) for x in clopper_pearson(0, 0))


@pytest.mark.parametrize("bad, message", [
    ({"a": "A", "b": "B"}, "expected {a, b, seeds_per_group}"),
    ({"a": "A", "b": "A", "seeds_per_group": 3}, "two different variants"),
    ({"a": "A", "b": "B", "seeds_per_group": 2}, "seeds_per_group must be an integer >= 3"),
    ({"a": "A", "b": "C", "seeds_per_group": 3}, "b names variant 'C'"),
])
def test_bad_pairs_are_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_aa(bad, {"A", "B"})


def test_the_report_section_states_rate_interval_and_rule():
    aa = judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3})
    md = to_markdown(aa_blocks(aa))
    assert "1 false verdict of 2, rate 50.0% (95% interval 1.3-98.7%)" in md
    assert "| 0, 1, 2 " in md and "| supported " in md and "Clopper-Pearson" in md and "Seeds in no group" in md
    assert "cannot yet show the rate is at most 5%" in md


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "base.yaml").write_text("train: {steps: 3}\n")
    path = tmp_path / "aa.yaml"
    path.write_text("name: aa\nbase_config: base.yaml\nseeds: [0, 1, 2]\nvariants:\n  A: {}\n  B: {run.twin: 1}\n"
                    + body)
    return path


def test_study_files_carry_the_pair(tmp_path):
    spec = load_study(_write(tmp_path, "kind: aa\naa: {a: A, b: B, seeds_per_group: 3}\n"))
    assert spec.aa == {"a": "A", "b": "B", "seeds_per_group": 3} and spec.controls == () and spec.kind == "aa"
    with pytest.raises(ConfigError, match="aa: b names variant 'C'"):
        load_study(_write(tmp_path, "kind: aa\naa: {a: A, b: C, seeds_per_group: 3}\n"))
    with pytest.raises(ConfigError, match="aa: a study of kind aa names its A/A pair"):
        load_study(_write(tmp_path, "aa: {a: A, b: B, seeds_per_group: 3}\n"))
    with pytest.raises(ConfigError, match="controls: a study of kind controls"):
        load_study(_write(tmp_path, "kind: controls\naa: {a: A, b: B, seeds_per_group: 3}\n"))


def test_an_aa_study_renders_its_section_and_index_line(tmp_path):
    from fabricate import fabricate

    from study.report.__main__ import main as report_main

    study = fabricate(tmp_path / "results", {"AA": A, "AA-TWIN": B},
                      variants={"AA": {"model.ppm": False}, "AA-TWIN": {"model.ppm": False, "run.twin": 1}},
                      name="aa_probe", paper_table=None, baseline=None,
                      aa={"a": "AA", "b": "AA-TWIN", "seeds_per_group": 3})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "aa_probe" / "index.md").read_text()
    assert "## A/A: does the claims rule decide between twins?" in md and "## Controls" not in md
    assert md.count("1 false verdict of 2") >= 2  # in the conclusion and the section
    assert "equivalent within ±0.5" not in md.split("## A/A")[1].split("Rule:")[0]  # group 3-5 is ±1.24 wide
    assert "1 false verdict of 2" in (out / "index.md").read_text()


def test_an_interval_under_alpha_is_read_as_shown():
    aa = judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3})
    md = to_markdown(aa_blocks({**aa, "false": 0, "rate": 0.0, "rate_low": 0.0, "rate_high": 0.04}))
    assert "the claims rule is shown to keep its false-verdict rate at most 5%" in md


def test_the_vectorised_rule_gives_decide_s_verdicts_on_many_random_groups():
    """false_verdicts is decide on a 2 x n matrix, one-row family: the same verdict on every group, ties and
    all-equal groups included."""
    rng = np.random.default_rng(7)
    for n in (3, 4, 5, 10):
        groups = rng.standard_t(3, size=(600, n)) * 2 + rng.choice([0.0, 0.5, 2.0], size=(600, 1))
        groups[:20] = np.round(groups[:20])  # ties
        groups[20:25] = 1.5  # all equal, not 0: decided
        groups[25:30] = 0.0  # all 0: not decided
        ours = false_verdicts(groups)
        for g, got in zip(groups, ours, strict=True):
            (d,) = decide(np.vstack([g, np.zeros(n)]), [(0, 1)])
            assert got == d["verdict"].decided, (n, g)
        assert ours[20:25].all() and not ours[25:30].any() and 0 < ours[30:].sum() < 570


def test_the_resampled_level_on_differences_whose_verdicts_are_known():
    ones = resampled_level([1.0] * 30, sizes=(3, 5, 10), draws=100, flip=False)  # every group all 1: p = 0, decided
    assert [(r["n"], r["groups"], r["regroupings"], r["false"], r["rate"], r["se"]) for r in ones] == [
        (3, 100, 10, 100, 1.0, 0.0), (5, 102, 17, 102, 1.0, 0.0), (10, 102, 34, 102, 1.0, 0.0)]
    zeros = resampled_level([0.0] * 30, sizes=(3,), draws=100)  # all 0: p = 1, never decided
    assert (zeros[0]["rate"], zeros[0]["se"]) == (0.0, 0.0)
    short = resampled_level([1.0, 2.0, 3.0, 4.0], sizes=(3, 5))  # fewer differences than n: no group
    assert short[1]["groups"] == 0 and math.isnan(short[1]["rate"]) and short[0]["groups"] >= 20000
    assert resampled_level([0.0] * 30, sizes=(3,), draws=100)[0]["rate"] == 0.0  # a flipped 0 is still 0


def test_the_resampled_level_flips_signs_as_the_twins_exchangeability_allows():
    """Thirty differences of 1, each with a random sign: a group is decided exactly when its signs agree beyond what
    its size allows. n = 3: all three alike (sd 0, p 0), 2/8; n = 5: all alike, 2/32 (4 to 1 gives t = 1.5 against
    2.776); n = 10: all alike or 9 to 1 (t = 4.0 against 2.262), 22/1024 (8 to 2: t = 2.25, just short)."""
    rates = resampled_level([1.0] * 30, sizes=(3, 5, 10), draws=60000, seed=5)
    for r, want in zip(rates, (2 / 8, 2 / 32, 22 / 1024), strict=True):
        assert abs(r["rate"] - want) < 4 * r["se"], (r, want)
    skewed = [-1.0] * 27 + [9.0] * 3  # a pool whose mean is 0 but whose bulk is negative, as a stall-heavy pool
    raw, flipped = (resampled_level(skewed, sizes=(10,), draws=20000, flip=f)[0]["rate"] for f in (False, True))
    assert raw > 0.05 > flipped  # without signs the bulk's direction is decided in many groups of 10


def test_the_monte_carlo_se_is_between_regroupings_by_hand():
    """Six differences 1, 1, 1, 0, 0, 0 in two groups of 3: only 1, 1, 1 is decided (all equal, not 0; 1, 1, 0 has
    t = 2 and 1, 0, 0 t = 1 on 2 df, p = 0.18 and 0.42), and it comes with 0, 0, 0: a regrouping has rate 1/2 with
    chance 2 / C(6, 3) = 1/10, else 0, so the two groups of a regrouping are not independent (one false verdict
    excludes the other). The se is the sd of the per-regrouping rates over sqrt(regroupings): sqrt(0.25 x 0.1 x 0.9
    / R), not the binomial sqrt(0.05 x 0.95 / 2R) over groups."""
    (r,) = resampled_level([1, 1, 1, 0, 0, 0], sizes=(3,), draws=20000, seed=3, flip=False)
    reps, k = r["regroupings"], r["false"]  # k regroupings had rate 1/2, the others 0
    assert (reps, r["groups"]) == (10000, 20000) and r["rate"] == k / 20000
    assert r["se"] == pytest.approx(0.5 * math.sqrt(k * (reps - k) / (reps * (reps - 1))) / math.sqrt(reps))
    assert r["se"] == pytest.approx(math.sqrt(0.25 * 0.1 * 0.9 / reps), rel=0.05)
    assert abs(r["rate"] - 0.05) < 3 * r["se"]
    assert resampled_level([1, 1, 1, 0, 0, 0], sizes=(3,), draws=200, seed=3) == \
        resampled_level([1, 1, 1, 0, 0, 0], sizes=(3,), draws=200, seed=3)  # a fixed-seed generator


def test_judge_aa_carries_the_differences_t_statistics_and_resampled_level():
    aa = judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3})
    assert aa["differences"] == pytest.approx([1.0, 1.1, 0.9, 0.5, -0.5, 0.0, 1.0])  # every shared seed, in order
    assert aa["groups"][0].t == pytest.approx(1 / (0.1 / math.sqrt(3)))
    assert [(r["n"], r["groups"] > 0) for r in aa["resampled"]] == [(3, True), (5, True), (10, False)]
    assert aa["resampled"] == resampled_level(aa["differences"])


def test_the_resampled_sentence_places_alpha_against_rate_and_two_se():
    aa = {"differences": [0.0] * 450, "seeds_per_group": 3, "n": 150, "rate_low": 0.037, "rate_high": 0.127}
    level = [{"n": 3, "rate": 0.03, "se": 0.005}, {"n": 5, "rate": 0.046, "se": 0.002},
             {"n": 10, "rate": 0.08, "se": 0.01}]
    line = resampled_line(aa, level)
    assert "3.00% (se 0.50%) at n = 3, 4.60% (se 0.20%) at n = 5, 8.00% (se 1.00%) at n = 10" in line
    assert ("at n = 3 under it by more than 2 se (the rule decides less often than its alpha); at n = 5 within 2 se "
            "of it; at n = 10 over it by more than 2 se (the rule over-decides)") in line
    assert "The fixed groups' interval (3.7%-12.7%) does not hold the resampled rate at their n = 3." in line
    assert "The 450 differences have mean +0.00 and sd 0.00 mIoU points" in line
    spread = resampled_line({**aa, "differences": [1.0, 2.0, 3.0, float("nan")]}, level)
    assert "The 3 differences have mean +2.00 and sd 1.00 mIoU points" in spread  # a nan (no pair) is left out


def test_the_section_shows_the_resampled_table_and_both_figures(tmp_path):
    aa = judge_aa(_table(A=A * 3, B=B * 3), {"a": "A", "b": "B", "seeds_per_group": 3})
    md = to_markdown(aa_blocks(aa, tmp_path / "figures"))
    assert "| fixed (the study's verdicts) " in md and "| resampled (" in md and "Monte Carlo se" in md
    assert "Resampled level: the same rule on random regroupings of the 21 observed paired differences" in md
    for name in ("aa_differences.png", "aa_t.png"):
        first = (tmp_path / "figures" / name).read_bytes()
        assert len(first) > 1000 and f"(figures/{name})" in md
        aa_blocks(aa, tmp_path / "figures")
        assert (tmp_path / "figures" / name).read_bytes() == first  # re-rendering gives the same bytes
    assert md.index("| resampled (") < md.index("figures/aa_t.png") < md.index("| Δ mIoU (a - b)")


def test_a_run_that_did_not_train_leaves_its_seed_out_of_its_group_and_is_counted():
    A = [0.60, 0.61, 0.62, 0.63, 0.64, 0.65]
    B = [0.60, 0.35, 0.62, 0.63, 0.64, 0.65]
    df = _table(A=A, B=B)
    df["trained"] = [True] * 7 + [False] + [True] * 4  # B seed 1 stalled
    aa = judge_aa(df, {"a": "A", "b": "B", "seeds_per_group": 3}, planned=range(6))
    first, second = aa["groups"]
    assert first.seeds == (0, 1, 2) and first.verdict == "too few seeds"  # seeds 0 and 2 left
    assert second.verdict == "inconclusive" and aa["waiting"] == [] and aa["stalls"] == {"A": (0, 6), "B": (1, 6)}
    from study.report.blocks import to_markdown

    assert "B: 1 of 6 runs." in to_markdown(aa_blocks(aa))


def test_the_noise_split_by_hand():
    """Differences 1, 2, 3 spread over seeds by a variance of 1.0 points²; an image part of 0.25 leaves 0.75."""
    noise = noise_sources([1.0, 2.0, 3.0, math.nan], 0.25)
    assert noise == pytest.approx({"n": 3, "total": 1.0, "image": 0.25, "training": 0.75, "share": 0.25,
                                   "training_sd": math.sqrt(0.75)})
    assert noise_sources([1.0, 2.0, 3.0], None) is None and noise_sources([1.0, 2.0], 0.1) is None
    assert noise_sources([1.0, 2.0, 3.0], 4.0)["training"] == 0.0  # an image part above the total leaves nothing


def test_image_variance_holds_the_models_and_resamples_the_images_by_hand():
    """Seed 0: a - b is 0 and 2 points over two resamples (variance 2.0); seed 1: 0 on both (0.0); mean 1.0."""
    boot = {("A", 0): np.array([0.50, 0.52]), ("B", 0): np.array([0.50, 0.50]),
            ("A", 1): np.array([0.60, 0.70]), ("B", 1): np.array([0.60, 0.70])}
    assert image_variance(boot, "A", "B", [0, 1]) == pytest.approx(1.0)
    assert image_variance(boot, "A", "B", [0, 2]) is None  # seed 2 has no counts


def test_the_section_says_where_the_spread_comes_from(tmp_path):
    """Per-image counts in the records give the evaluation sample's share of the A/A spread; none, no sentence."""
    from fabricate import fabricate

    from study.report.__main__ import main as report_main

    rng = np.random.default_rng(0)
    counts = {(v, s): (rng.integers(0, 50, (12, 4)), rng.integers(50, 100, (12, 4)))
              for v in ("AA", "AA-TWIN") for s in range(len(A))}
    study = fabricate(tmp_path / "results", {"AA": A, "AA-TWIN": B},
                      variants={"AA": {"model.ppm": False}, "AA-TWIN": {"model.ppm": False, "run.twin": 1}},
                      name="aa_probe", paper_table=None, baseline=None, per_image=counts,
                      aa={"a": "AA", "b": "AA-TWIN", "seeds_per_group": 3})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "aa_probe" / "index.md").read_text()
    total = np.var([100 * (a - b) for a, b in zip(A, B, strict=True)], ddof=1)
    assert f"of the {total:.2f} points² its 7 differences spread over seeds" in md
    assert "scoring more images could not bring the differences' sd below" in md
    aa = judge_aa(_table(A=A, B=B), {"a": "A", "b": "B", "seeds_per_group": 3})
    assert aa["noise"] is None and "Where the spread comes from" not in to_markdown(aa_blocks(aa))
