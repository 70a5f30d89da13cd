import math

import numpy as np
import pandas as pd
import pytest

from study.results.stats import decide
from study.results.summary import memory_label, protocol_warnings, study_facts, summarize_variants


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


def test_study_facts_read_what_ran_from_the_table_and_the_records():
    from types import SimpleNamespace as Run

    df = table(variant=["A", "A", "B", "B"], seed=[0, 1, 0, 1], status=["completed"] * 3 + ["failed"],
               data=["probe"] * 4, crop=["128x128"] * 4, steps=[400] * 4, batch=[8] * 4, lr=[0.01, 0.01, 0.02, 0.02],
               dtype=["bfloat16", "bfloat16", "", ""], trained=[True, False, None, None])
    prov = {"device": "cpu (x86_64, 1 threads)", "train_size": 2000, "val_size": 300, "weights": "from scratch"}
    records = [Run(status="completed", provenance=prov, config={"model": {"pretrained": ""}},
                   finished_at=f"2026-01-0{d}T10:00:00+00:00") for d in (3, 1, 2)]
    facts = study_facts(df, records)
    assert (facts["runs"], facts["completed"], facts["failed"], facts["pruned"]) == (4, 3, 1, 0)
    assert facts["seeds"] == [0, 1] and facts["variants"] == 2
    assert facts["lr"] == ["0.01", "0.02"] and facts["steps"] == ["400"]  # distinct over completed runs
    assert facts["precision"] == "bfloat16" and facts["precision_from"] == "throughput" and facts["device"] == "cpu (x86_64, 1 threads)"
    assert facts["hardware"] == "" and facts["pretrained"] is False and facts["weights"] == ["from scratch"]
    assert facts["dates"] == ("2026-01-01", "2026-01-03")
    assert facts["untrained"] == [("A", 1)] and facts["checked"] is True  # None counts as trained
    settings = {**prov, "settings": {"dtype": "float32", "hardware": "cpu (avx2, no native bf16)"}}
    facts = study_facts(df.drop(columns=["trained", "dtype"]), [Run(status="completed", provenance=settings,
                        config={"model": {"pretrained": "ckpt.pt"}}, finished_at="")])
    assert facts["precision"] == "float32" and facts["precision_from"] == "provenance" and facts["hardware"] == "cpu (avx2, no native bf16)"
    assert facts["untrained"] == [] and facts["checked"] is False and facts["pretrained"] is True
    assert facts["dates"] is None
