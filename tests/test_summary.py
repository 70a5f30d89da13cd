import math

import numpy as np
import pandas as pd
import pytest

from study.results.stats import decide
from study.results.summary import memory_label, protocol_warnings, summarize_variants


def table(**cols):
    n = len(cols["variant"])
    base = {"seed": list(range(n)), "status": ["completed"] * n, "miou": [0.5] * n, "pixel_acc": [0.9] * n,
            "mean_acc": [0.4] * n, "mean_acc_present": [0.6] * n, "infer_img_s": [10.0] * n,
            "throughput_source": ["run"] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_summaries_are_percent_with_clipped_t_intervals_and_per_seed_values():
    df = table(variant=["A", "A", "A", "B"], seed=[0, 1, 2, 0], pixel_acc=[0.98, 1.0, 0.99, 0.5],
               miou=[0.5, 0.6, 0.7, 0.4], infer_img_s=[10.0, 30.0, 20.0, 5.0],
               status=["completed", "completed", "completed", "failed"])
    s = summarize_variants(df).set_index("variant")
    assert s.loc["A", "miou_mean"] == pytest.approx(60.0) and s.loc["A", "miou_std"] == pytest.approx(10.0)
    assert s.loc["A", "miou_values"] == pytest.approx([50.0, 60.0, 70.0]) and s.loc["A", "miou_seeds"] == [0, 1, 2]
    assert s.loc["A", "acc_ci_high"] == 100.0  # 99 + 4.30 / sqrt(3) clipped
    assert s.loc["A", "infer_img_s"] == 20.0 and s.loc["A", "macc_present_mean"] == pytest.approx(60.0)
    assert s.loc["B", "n"] == 0 and s.loc["B", "runs"] == 1 and math.isnan(s.loc["B", "miou_mean"])


def test_protocol_warnings_only_for_completed_rows():
    df = table(variant=["A", "B", "C"], device=["cpu", "cuda:0", "tpu"], status=["completed", "completed", "failed"])
    assert protocol_warnings(df) == ["rows differ in device: cpu, cuda:0"]


def test_memory_is_named_for_what_it_measures():
    assert memory_label(["cuda max_memory_allocated"]) == "CUDA allocator peak MB"
    assert memory_label(["process peak RSS (ru_maxrss)", ""]) == "process peak RSS MB (includes the data cache)"
    assert memory_label([]) == "peak memory MB (kind not recorded)"
    assert "; " in memory_label(["cuda max_memory_allocated", "process peak RSS (ru_maxrss)"])


def test_missing_seeds_use_the_pairs_shared_seeds():
    y = np.array([[1.0, 2.0, 3.0, np.nan], [0.0, 1.5, 2.0, 4.0]])
    row = decide(y, [(0, 1)])[0]  # the paired t over the 3 shared seeds
    d = np.array([1.0, 0.5, 1.0])
    assert row["n"] == 3 and row["df"] == 2 and row["columns"] == [0, 1, 2]
    assert row["diff"] == pytest.approx(d.mean()) and row["sd"] == pytest.approx(d.std(ddof=1))
    assert decide(y[:, :2], [(0, 1)])[0]["verdict"] == "too few seeds"
