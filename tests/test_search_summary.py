"""A search's trials summarised: counts by state, the best trials, and whether it lands on the paper's pyramid."""

import math

import pandas as pd

from study.results.search import pruned_steps, search_summary


def trials(rows):
    return pd.DataFrame(rows, columns=["number", "value", "state", "params_model.bins", "params_model.pool",
                                       "params_model.reduction", "params_train.lr"])


def test_counts_best_trials_and_the_papers_choice():
    df = trials([
        (0, 0.80, "COMPLETE", "[1, 2, 3, 6]", "avg", True, 0.03),
        (1, 0.82, "COMPLETE", "[1, 2]", "avg", False, 0.02),
        (2, 0.40, "PRUNED", "[1]", "max", False, 0.09),
        (3, math.nan, "FAIL", "[1]", "avg", True, 0.01),
        (4, 0.81, "COMPLETE", "[1, 2, 3, 6]", "avg", True, 0.01),
    ])
    s = search_summary(df, top=2)
    assert s["counts"] == {"COMPLETE": 3, "FAIL": 1, "PRUNED": 1} and s["completed"] == 3
    assert [b["number"] for b in s["best"]] == [1, 4]
    assert s["best"][1] == {"number": 4, "value": 0.81, "model.bins": "[1, 2, 3, 6]", "model.pool": "avg",
                            "model.reduction": "true", "train.lr": "0.01"}
    assert s["paper"] == {"keys": ["model.bins", "model.pool", "model.reduction"], "best_is_paper": False,
                          "best_paper_value": 0.81, "best_paper_rank": 2}
    best = search_summary(df[df["number"] != 1])
    assert best["paper"]["best_is_paper"] is True and best["paper"]["best_paper_rank"] == 1


def test_a_space_without_the_pyramid_says_nothing_about_it():
    df = pd.DataFrame({"number": [0], "value": [0.5], "state": ["COMPLETE"], "params_train.lr": [0.01]})
    s = search_summary(df)
    assert s["paper"]["keys"] == [] and s["paper"]["best_is_paper"] is None


def test_pruned_runs_are_counted_by_the_step_they_stopped_at():
    from types import SimpleNamespace as Run

    runs = [Run(status="pruned", curves=[{"step": 100, "loss": 1.0}, {"step": 100, "val_miou": 0.5}]),
            Run(status="pruned", curves=[{"step": 100}, {"step": 200, "val_miou": 0.6}]),
            Run(status="pruned", curves=[{"step": 100}]),
            Run(status="pruned", curves=[]),
            Run(status="completed", curves=[{"step": 400}])]
    assert pruned_steps(runs) == {0: 1, 100: 2, 200: 1}
