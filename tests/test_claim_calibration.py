"""The verdict rule on simulated Table-1 studies with known truth (7 variants, Gaussian runs).

Pairs are the Table-1 claim rows (those the claims find among its 7 variants). The fast tests use a few
hundred studies; the slow ones thousands, with bounds that leave about two Monte-Carlo standard errors beside the rates measured (noted at each bound).
"""

from pathlib import Path

import numpy as np
import pytest
from fabricate import claim_pairs  # noqa: I001

from study.results.sequential import SequentialPlan, operating_characteristics, run_sequential
from study.results.stats import decide

# FCN, B1-MAX, B1-AVE, B1236-MAX, B1236-AVE, B1236-MAX-DR, B1236-AVE-DR
PAIRS = claim_pairs()
# every claim row true; the 7 rows between PPM variants exactly one step, the others 2-4 steps
STAIRS = np.array([0, 1, 2, 2, 3, 3, 4.0])
# the shipped table1's spread: the FCN 2.5x noisier (in 6 of 13 rows), B1236-MAX and B1236-MAX-DR 1.8x
UNEQUAL = np.array([2.5, 1, 1, 1.8, 1, 1.8, 1])
DECIDED = ("supported", "contradicted")


def studies(mu, sd, n, seeds=5, rng_seed=0, collapse=None):
    rng = np.random.default_rng(rng_seed)
    for _ in range(n):
        y = np.asarray(mu, float)[:, None] + np.asarray(sd, float)[:, None] * rng.standard_normal((7, seeds))
        if collapse is not None:  # variant `collapse` loses 20 sd on each seed with probability 0.3
            y[collapse] -= 20 * (rng.random(seeds) < 0.3)
        yield y


def wrong(rows, mu):
    """Any verdict on a pair of equal means, or on the wrong side."""
    for (a, b), r in zip(PAIRS, rows, strict=True):
        truth = np.sign(mu[a] - mu[b])
        if r["verdict"] in DECIDED and (truth == 0 or (r["verdict"] == "supported") != (truth > 0)):
            return True
    return False


def any_wrong_rate(mu, sd, n, **kw):
    return np.mean([wrong(decide(y, PAIRS), np.asarray(mu, float)) for y in studies(mu, sd, n, **kw)])


def test_unequal_noise_keeps_the_null_rate_fast():
    rate = any_wrong_rate(np.zeros(7), UNEQUAL, 300)
    assert rate <= 0.05 + 0.025, rate  # 0.05 + 2 Monte-Carlo se at 300 studies; measured 0.053 (0.046 over 4000)


def test_intervals_exclude_zero_exactly_for_decided_rows():
    """The invariant behind 'intervals at the verdict's level', with and without looks, over mixed truths."""
    plan = SequentialPlan(first=3, step=3, max_seeds=9)
    checked = decided = 0
    for i, y in enumerate(studies(4 * STAIRS * (np.arange(7) % 2), UNEQUAL, 200, seeds=9, rng_seed=3)):
        for rows in (decide(y[:, :5], PAIRS), decide(y, PAIRS, looks=plan.looks, spend=plan.shares),
                     decide(y[:, :7], PAIRS, looks=plan.looks, spend=plan.shares)):  # mid-study: 2 of 3 looks
            for r in rows:
                excludes = r["ci_low"] > 0 or r["ci_high"] < 0
                assert excludes == (r["verdict"] in DECIDED), (i, r)
                if excludes:
                    assert (r["ci_low"] > 0) == (r["verdict"] == "supported") and r["ci_low"] <= r["diff"] <= r["ci_high"]
                assert r["confidence"] >= 0.95
                checked += 1
                decided += excludes
    assert checked == 200 * 3 * len(PAIRS) and 0.2 < decided / checked < 0.8  # both kinds of rows were met


def test_sequential_rule_on_a_few_null_studies():
    plan = SequentialPlan(first=5, step=5, max_seeds=15)
    wrong_verdicts, runs = 0, 0
    for y in studies(np.zeros(7), UNEQUAL, 60, seeds=15, rng_seed=11):
        rows, ran = run_sequential(y, PAIRS, plan)
        wrong_verdicts += wrong(rows, np.zeros(7))
        runs += ran.sum()
        assert all(r["looks"] <= 3 for r in rows) and set(ran) <= {5, 10, 15}
    assert wrong_verdicts <= 6, wrong_verdicts  # 60 x (0.05 + 2 Monte-Carlo se); measured 4 (1000 studies: slow test)
    assert runs == 60 * 7 * 15  # in a null study some claim of every variant stays open to the last look


@pytest.mark.slow
@pytest.mark.parametrize("sd", [np.ones(7), UNEQUAL])
def test_null_studies_rarely_give_any_verdict(sd):
    rate = any_wrong_rate(np.zeros(7), sd, 4000)
    assert rate <= 0.05 + 0.007, rate  # 2 Monte-Carlo se at 4000 studies; measured 0.044 (equal), 0.046 (unequal)


@pytest.mark.slow
def test_a_collapsing_variant_gives_no_false_verdict_elsewhere():
    mu = np.zeros(7)
    bad = 0
    for y in studies(mu, np.ones(7), 1000, collapse=2):
        for (a, b), r in zip(PAIRS, decide(y, PAIRS), strict=True):
            # truth: variant 2 is worse (it collapses); every other pair is equal
            if (2 not in (a, b) and r["verdict"] != "inconclusive") or (a == 2 and r["verdict"] == "supported") \
                    or (b == 2 and r["verdict"] == "contradicted"):
                bad += 1
                break
    assert bad / 1000 <= 0.05, bad  # measured 0.039


@pytest.mark.slow
@pytest.mark.parametrize("sign, right", [(1, "supported"), (-1, "contradicted")])
def test_four_sd_steps_at_five_seeds(sign, right):
    """The price of a rule fixed in advance is small here: each row's own noise (df 4 at 5 seeds) finds 98% of the
    4-sd steps (the earlier pooled noise, chosen from the data: 99.5%), because Holm's later steps are lenient
    once the large gaps are decided."""
    hits = total = wrongs = 0
    mu = sign * 4 * STAIRS
    for y in studies(mu, np.ones(7), 1000, rng_seed=1):
        rows = decide(y, PAIRS)
        wrongs += wrong(rows, mu)
        for (a, b), r in zip(PAIRS, rows, strict=True):
            if abs(mu[a] - mu[b]) == 4:
                total += 1
                hits += r["verdict"] == right
    assert hits / total >= 0.95, hits / total  # measured 0.978 (supported) and 0.985 (contradicted)
    assert wrongs == 0


@pytest.mark.slow
def test_each_interval_covers_the_true_gap_at_least_95_percent_of_the_time():
    covered = total = 0
    for y in studies(2 * STAIRS, UNEQUAL, 1000, rng_seed=5):
        for (a, b), row in zip(PAIRS, decide(y, PAIRS), strict=True):
            covered += row["ci_low"] <= 2 * (STAIRS[a] - STAIRS[b]) <= row["ci_high"]
            total += 1
    assert covered / total >= 0.95, covered / total  # measured 0.995 over 13000 rows


@pytest.mark.slow
@pytest.mark.parametrize("sd", [np.ones(7), UNEQUAL])
def test_sequential_null_rate(sd):
    r = operating_characteristics(np.zeros(7), sd, PAIRS, plan=SequentialPlan(), studies=1000, seed=2)
    # 0.05 + 2 Monte-Carlo se at 1000 studies; measured 0.046 (equal noise) and 0.031 (unequal)
    assert r["sequential"]["any_wrong"] <= 0.05 + 0.014, r


@pytest.mark.slow
@pytest.mark.parametrize("step_sd", [2, 4])
def test_sequential_against_a_fixed_study(step_sd):
    """Looks at 5, 10, 15, 20 seeds against a fixed 10-seed study, one step = 2 or 4 noise sd."""
    r = operating_characteristics(step_sd * STAIRS, np.ones(7), PAIRS, plan=SequentialPlan(), studies=500, seed=3)
    seq, fixed = r["sequential"], r["fixed"]
    assert seq["any_wrong"] == fixed["any_wrong"] == 0
    if step_sd == 2:  # measured: found 0.9995 with 86.1 runs a study; fixed 0.954 with 70
        assert seq["found"] >= fixed["found"] and seq["runs"] <= 1.5 * fixed["runs"], r
    else:  # measured: found 1.0 with 55.3 runs; fixed 1.0 with 70
        assert seq["found"] >= 0.99 and seq["runs"] < fixed["runs"], r


def _stalled_false_rate(diffs, n, stall, every_run, groups, rng, depth=25.0):
    """The share of one-row families (n seeds drawn from the A/A differences) the rule decides, with arm b stalling
    on a share `stall` of its runs (`depth` points lower, so a - b rises). The runs that trained (the verdicts'
    estimand): a stalled seed is left out (nan), as judge_claims leaves out a run its record flags. Every run (the
    sensitivity's): the stalled seed counts, and every difference is shifted so the two arms' means stay equal."""
    wrong = 0
    for _ in range(groups):
        d = rng.choice(diffs, size=n, replace=False)
        hit = rng.random(n) < stall
        if every_run:
            d = d + depth * hit - depth * stall
        else:
            d = np.where(hit, np.nan, d)
        (row,) = decide(np.vstack([d, np.zeros(n)]), [(0, 1)])
        wrong += row["verdict"] in ("supported", "contradicted")
    return wrong / groups


@pytest.mark.slow
@pytest.mark.parametrize("stall", [0.05, 0.10])
def test_stalls_keep_the_rule_at_its_level_for_the_runs_that_trained(stall):
    """Resampled from the shipped A/A differences (FCN vs its twin, 450 seeds): with one arm stalling on 5-10% of
    its runs, 25 points deep (the diluted control's B1-MAX seed: 30.0 against 54.8-57.1), the rule keeps its
    false-verdict rate at 5% for the estimand the verdicts use, and does not for the mean over every run."""
    import pandas as pd

    from study.results.table import trained_mask

    df = pd.read_parquet(Path(__file__).resolve().parents[1] / "reports/_inputs/aa_probe/runs.parquet")
    assert trained_mask(df).all()  # the A/A runs all trained: the stalls are the only ones injected
    a = df[df["variant"] == "AA-FCN"].set_index("seed")["miou"]
    b = df[df["variant"] == "AA-FCN-TWIN"].set_index("seed")["miou"]
    diffs = 100 * (a - b.reindex(a.index)).dropna().to_numpy()
    rng = np.random.default_rng(7)
    for n in (3, 5, 10):
        rate = _stalled_false_rate(diffs, n, stall, every_run=False, groups=3000, rng=rng)
        assert rate <= 0.05 + 0.008, (n, rate)  # 2 Monte-Carlo se at 3000 groups
    assert _stalled_false_rate(diffs, 5, stall, every_run=True, groups=3000, rng=rng) > 0.10
