import numpy as np
import pytest
from fabricate import fabricate  # noqa: I001

from study.results.on_demand import first_round, next_round
from study.results.sequential import SequentialPlan, next_columns, run_sequential
from study.results.table import build_table


def test_plan_looks_shares_and_seed_order():
    plan = SequentialPlan()
    assert plan.looks == (5, 10, 15, 20) and plan.shares == (0.25,) * 4 and plan.seeds == tuple(range(20))
    odd = SequentialPlan(first=5, step=4, max_seeds=15, order=tuple(range(100, 116)), spend="size")
    assert odd.looks == (5, 9, 13, 15) and odd.seeds == tuple(range(100, 115))
    assert odd.shares == pytest.approx((5 / 42, 9 / 42, 13 / 42, 15 / 42))
    assert SequentialPlan(first=5, step=5, max_seeds=5).looks == (5,)


@pytest.mark.parametrize("data, field", [({"first": 2}, "first"), ({"first": 6, "max_seeds": 5}, "max_seeds"),
                                         ({"spend": "obf"}, "spend"), ({"step": 0}, "step"), ({"seeds": 3}, "seeds"),
                                         ({"max_seeds": 6, "order": [1, 1, 2, 3, 4, 5]}, "order")])
def test_a_bad_plan_is_refused_naming_the_field(data, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        SequentialPlan.from_dict(data)


def test_only_the_variants_of_undecided_claims_get_the_next_look():
    rng = np.random.default_rng(0)
    full = np.array([[20.0], [0.0], [0.0]]) + rng.standard_normal((3, 9))  # 0 >> 1, 1 == 2
    plan = SequentialPlan(first=3, step=3, max_seeds=9)
    finished = np.zeros(full.shape, dtype=bool)
    finished[:, :3] = True
    y = np.where(finished, full, np.nan)
    assert next_columns(y, finished, [(0, 1), (2, 1)], plan) == {1: 6, 2: 6}
    rows, ran = run_sequential(full, [(0, 1), (2, 1)], plan)
    assert rows[0]["verdict"] == "supported" and rows[0]["look"] == 1 and list(ran) == [3, 9, 9]
    assert rows[1]["looks"] == 3 and rows[1]["n"] == 9


def test_next_round_reads_the_results_table(tmp_path):
    miou = {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.51, 0.50, 0.53], "B1236-AVE": [0.80, 0.81, 0.80]}
    df = build_table(fabricate(tmp_path, miou))
    plan = SequentialPlan(first=3, step=3, max_seeds=6)
    assert first_round(["FCN", "B1-AVE"], plan) == {"FCN": [0, 1, 2], "B1-AVE": [0, 1, 2]}
    # B1236-AVE beats both by far at the first look; B1-AVE vs FCN is open: only those two run seeds 3-5
    assert next_round(df, plan) == {"B1-AVE": [3, 4, 5], "FCN": [3, 4, 5]}
    more = build_table(fabricate(tmp_path / "more", {k: v * 2 for k, v in miou.items()}))
    assert next_round(more, plan) == {}  # at the last look: done
    more.loc[(more["variant"] == "FCN") & (more["seed"] == 5), "status"] = "running"
    assert next_round(more, plan) == {}  # in flight counts as run: never asked twice
