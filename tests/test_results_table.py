import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from fabricate import TABLE1, fabricate  # noqa: I001

from study.results.table import ResultsError, build_table, read_table, write_table

MIOU = {v: [0.5 + 0.01 * i, 0.51 + 0.01 * i, 0.52 + 0.01 * i] for i, v in enumerate(TABLE1)}


def test_table_has_the_contract_columns_and_order(tmp_path):
    df = write_table(fabricate(tmp_path, MIOU))
    assert len(df) == 21 and list(df["variant"].unique()) == list(TABLE1)  # study order, then seeds
    assert df["seed"].tolist() == [0, 1, 2] * 7
    for col in ("study", "variant", "seed", "backbone", "depth", "bins", "pool", "reduction", "aux_weight",
                "output_stride", "augment", "crop", "steps", "batch", "lr", "status", "miou", "miou_present",
                "pixel_acc", "mean_acc", "train_img_s", "infer_img_s", "latency_ms_p50", "peak_mem_mb", "params_m",
                "gflops", "train_seconds", "eval_seconds", "config_hash", "recipe", "git_sha", "device", "error",
                "iou/road", "iou/water", "iou/car", "iou/boat"):
        assert col in df.columns, col
    fcn = df[df["variant"] == "FCN"].iloc[0]
    assert (fcn["bins"], fcn["pool"], fcn["reduction"], bool(fcn["ppm"])) == ("none", "-", "-", False)
    dr = df[df["variant"] == "B1236-AVE-DR"].iloc[0]
    assert (dr["bins"], dr["pool"], dr["reduction"]) == ("1,2,3,6", "avg", "DR")
    assert df[df["variant"] == "B1-MAX"].iloc[0][["bins", "pool", "reduction"]].tolist() == ["1", "max", "no DR"]
    assert fcn["miou"] == pytest.approx(0.5) and fcn["pixel_acc"] == pytest.approx(0.75)
    assert fcn["iou/water"] == pytest.approx(0.45)
    assert df["status"].eq("completed").all() and df["device"].eq("cpu").all()


def test_written_files_round_trip_and_leave_no_temporaries(tmp_path):
    study = fabricate(tmp_path, MIOU)
    df = write_table(study)
    assert pd.read_parquet(study / "runs.parquet").equals(df)
    assert read_table(study).equals(df)
    assert (study / "runs.csv").read_text().startswith("study,variant,seed")
    assert sorted(p.name for p in study.iterdir()) == ["runs", "runs.csv", "runs.parquet", "study.json"]
    before = {p.name: p.read_bytes() for p in study.glob("runs.*")}
    write_table(study)
    assert {p.name: p.read_bytes() for p in study.glob("runs.*")} == before  # rewriting is byte-identical


def test_failed_runs_are_rows_with_their_error(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.5, 0.6]}, failed={"B1-AVE": "CUDA out of memory"})
    df = build_table(study)
    failed = df[df["variant"] == "B1-AVE"]
    assert failed["status"].tolist() == ["failed"] and failed["error"].tolist() == ["CUDA out of memory"]
    assert failed["miou"].isna().all()


def test_variant_order_follows_study_json(tmp_path):
    study = fabricate(tmp_path, MIOU)
    manifest = json.loads((study / "study.json").read_text())
    manifest["variant_order"] = list(reversed(TABLE1))
    (study / "study.json").write_text(json.dumps(manifest))
    assert list(build_table(study)["variant"].unique()) == list(reversed(TABLE1))


def test_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(ResultsError, match="results folder not found"):
        build_table(tmp_path / "missing")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(ResultsError, match="no run records"):
        build_table(tmp_path / "empty")
    study = fabricate(tmp_path, {"FCN": [0.5]})
    (study / "runs" / "FCN__s0" / "record.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"FCN__s0/record\.json"):
        write_table(study)
    assert not (study / "runs.parquet").exists()


@pytest.mark.slow  # a fresh interpreter imports every results module (about 3 s)
def test_results_modules_never_import_torch():
    code = ("import sys; import study.results.table, study.results.stats, study.results.claims, "
            "study.results.images, study.results.summary, study.manifest, study.report.blocks, "
            "study.report.render, study.report.plots, study.report.__main__; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'optuna' not in sys.modules, 'optuna imported'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_table_is_built_from_the_records_whatever_the_file_times(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.5, 0.6]})
    write_table(study)
    os.utime(study / "runs.parquet", ns=(4 * 10**18, 4 * 10**18))  # year 2096: the table looks newer than the records
    path = study / "runs" / "FCN__s1" / "record.json"
    data = json.loads(path.read_text())
    data["metrics"]["miou"] = 0.7
    path.write_text(json.dumps(data))
    os.utime(path, ns=(10**18, 10**18))  # and the record older
    assert read_table(study)["miou"].tolist() == [0.5, 0.7]
    assert pd.read_parquet(study / "runs.parquet")["miou"].tolist() == [0.5, 0.7]  # rewritten
    (study / "runs.parquet").write_bytes(b"garbage")  # a damaged table is rebuilt, not read
    assert read_table(study)["miou"].tolist() == [0.5, 0.7]
    (study / "runs.parquet").unlink()
    assert read_table(study)["miou"].tolist() == [0.5, 0.7] and (study / "runs.parquet").exists()


def test_an_unchanged_table_is_not_rewritten(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.5, 0.6]})
    write_table(study)
    os.utime(study / "runs.parquet", ns=(10**18, 10**18))
    read_table(study)
    assert (study / "runs.parquet").stat().st_mtime_ns == 10**18


def test_a_table_stamped_by_another_pandas_is_not_rewritten_but_a_changed_one_is(tmp_path):
    """Shipped inputs re-render byte for byte under a newer pandas: the file's version stamps differ, its table
    does not."""
    import pyarrow.parquet as pq

    study = fabricate(tmp_path, {"FCN": [0.5, 0.6]})
    write_table(study)
    path = study / "runs.parquet"
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"pandas"] = meta[b"pandas"].replace(b'"pandas_version": "', b'"pandas_version": "0.0.0-other-')
    pq.write_table(table.replace_schema_metadata(meta), path)
    stamped = path.read_bytes()
    assert b"0.0.0-other-" in stamped
    read_table(study)
    assert path.read_bytes() == stamped  # the same table: left alone
    pq.write_table(table.slice(0, 1).replace_schema_metadata(meta), path)  # one row lost: rewritten
    read_table(study)
    assert pd.read_parquet(path)["miou"].tolist() == [0.5, 0.6]


def test_a_code_change_that_adds_a_column_shows_without_touching_the_records(tmp_path, monkeypatch):
    import study.results.table as table

    study = fabricate(tmp_path, {"FCN": [0.5, 0.6]})
    write_table(study)
    original = table.row_of
    monkeypatch.setattr(table, "row_of", lambda *a, **k: {**original(*a, **k), "new_column": 1.0})
    assert read_table(study)["new_column"].tolist() == [1.0, 1.0]
    assert "new_column" in pd.read_parquet(study / "runs.parquet").columns


def test_bench_files_replace_a_variants_throughput(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.5, 0.6], "B1-AVE": [0.6, 0.7]})
    (study / "bench").mkdir()
    (study / "bench" / "FCN.json").write_text(json.dumps({"variant": "FCN", "throughput": {
        "train_img_s": 42.0, "infer_img_s": 420.0, "peak_mem_mb": 1234.0, "memory_kind": "cuda max_memory_allocated"}}))
    df = read_table(study)
    fcn, ave = df[df["variant"] == "FCN"], df[df["variant"] == "B1-AVE"]
    assert fcn["infer_img_s"].tolist() == [420.0, 420.0] and fcn["train_img_s"].tolist() == [42.0, 42.0]
    assert fcn["throughput_source"].tolist() == ["bench/FCN.json"] * 2
    assert fcn["memory_kind"].tolist() == ["cuda max_memory_allocated"] * 2
    assert ave["infer_img_s"].tolist() == [300.0 - 10 * len("B1-AVE")] * 2 and ave["throughput_source"].eq("run").all()
    (study / "bench" / "B1-AVE.json").write_text('{"variant": "B1-AVE"}')
    with pytest.raises(ResultsError, match=r"bench/B1-AVE\.json: unreadable bench file"):
        build_table(study)


def test_branch_axis_reads_ppm_branch(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.5], "B1-AVE": [0.6], "B1-MAX": [0.55]})
    path = study / "runs" / "B1-MAX__s0" / "record.json"
    data = json.loads(path.read_text())
    data["config"]["model"]["ppm_branch"] = "raw"
    path.write_text(json.dumps(data))
    df = build_table(study)
    assert dict(zip(df["variant"], df["branch"], strict=True)) == {"FCN": "-", "B1-AVE": "conv", "B1-MAX": "raw"}
    assert df["mean_acc_present"].tolist() == pytest.approx([0.52, 0.57, 0.62])  # table order: FCN, B1-MAX, B1-AVE


def test_trained_column_reads_the_record(tmp_path):
    import dataclasses

    from study.record import read_record, write_record

    study = fabricate(tmp_path, {"FCN": [0.6, 0.61], "B1-MAX": [0.22, 0.6]})
    path = study / "runs" / "B1-MAX__s0" / "record.json"
    write_record(dataclasses.replace(read_record(path), trained=False, training_check={"ratio": 0.53}), path.parent)
    path = study / "runs" / "B1-MAX__s1" / "record.json"
    write_record(dataclasses.replace(read_record(path), trained=True, training_check={"ratio": 0.27}), path.parent)
    df = write_table(study)
    got = dict(zip(df["variant"] + "/" + df["seed"].astype(str), df["trained"], strict=True))
    assert [got["B1-MAX/0"], got["B1-MAX/1"]] == [False, True]
    assert pd.isna(got["FCN/0"]) and pd.isna(got["FCN/1"])  # records that were never judged
    again = read_table(study)
    assert again["trained"].tolist()[2:] == [False, True] and again["trained"].isna().tolist()[:2] == [True, True]


def test_a_study_rule_rejudges_the_stored_training_check(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.36, 0.34, 0.39], "B1-AVE": [0.58, 0.59, 0.60]})
    ratios = {"FCN": [0.43, 0.48, 0.53], "B1-AVE": [0.30, 0.27, 0.50]}
    for variant, values in ratios.items():
        for seed, ratio in enumerate(values):
            path = study / "runs" / f"{variant}__s{seed}" / "record.json"
            rec = json.loads(path.read_text())
            rec["trained"] = ratio <= 0.45
            rec["training_check"] = {"rule": "final/first loss", "max_ratio": 0.45, "ratio": ratio}
            path.write_text(json.dumps(rec))
    assert build_table(study)["trained"].tolist() == [True, False, False, True, True, False]  # the runs' own

    manifest = json.loads((study / "study.json").read_text())
    manifest["variants"]["FCN"]["train.trained_loss_ratio"] = 0  # this variant: check off
    manifest["overrides"] = {"train.trained_loss_ratio": 0.55}  # every other variant: a looser bound
    (study / "study.json").write_text(json.dumps(manifest))
    df = build_table(study)
    assert df["trained"].tolist() == [None, None, None, True, True, True]


def _losses(study, variant, finals, first=1.4):
    for seed, final in enumerate(finals):
        path = study / "runs" / f"{variant}__s{seed}" / "record.json"
        rec = json.loads(path.read_text())
        rec["trained"] = final / first <= 0.45  # the run's own look, as run_one writes it
        rec["training_check"] = {"rule": "final_loss <= max_ratio x initial_loss", "max_ratio": 0.45,
                                 "initial_loss": first, "final_loss": final, "ratio": final / first}
        path.write_text(json.dumps(rec))


def test_a_floor_every_seed_shares_is_not_a_stall_and_one_stuck_seed_is(tmp_path):
    # FCN: every seed ends near 0.70 of a 1.4 start (ratio 0.50, above 0.45): the task's floor for this model.
    # B1-MAX: seed 1 ends at 0.70 where its siblings got to 0.42 and 0.45: 0.70 > 1.5 x 0.42 = 0.63, a stall.
    # B1-AVE: seed 2 at 0.66 against a best sibling of 0.46 (1.43 x): inside the bound, trained.
    study = fabricate(tmp_path, {"FCN": [0.40, 0.41, 0.40], "B1-MAX": [0.55, 0.30, 0.56],
                                 "B1-AVE": [0.57, 0.58, 0.56]})
    _losses(study, "FCN", [0.69, 0.71, 0.70])
    _losses(study, "B1-MAX", [0.42, 0.70, 0.45])
    _losses(study, "B1-AVE", [0.46, 0.50, 0.66])
    df = build_table(study)
    got = dict(zip(df["variant"] + "/" + df["seed"].astype(str), df["trained"], strict=True))
    assert [got[f"FCN/{s}"] for s in range(3)] == [True, True, True]
    assert [got[f"B1-MAX/{s}"] for s in range(3)] == [True, False, True]
    assert [got[f"B1-AVE/{s}"] for s in range(3)] == [True, True, True]

    manifest = json.loads((study / "study.json").read_text())
    manifest["overrides"] = {"train.trained_sibling_ratio": 1.4}  # a tighter bound from the study file: 0.66 > 0.644
    (study / "study.json").write_text(json.dumps(manifest))
    got = dict(zip(df["variant"] + "/" + df["seed"].astype(str), build_table(study)["trained"], strict=True))
    assert got["B1-AVE/2"] is False and got["B1-MAX/1"] is False and got["FCN/1"] is True


def test_a_run_without_siblings_is_judged_by_its_loss_ratio_alone(tmp_path):
    study = fabricate(tmp_path, {"FCN": [0.40], "B1-MAX": [0.55]})
    _losses(study, "FCN", [0.70])  # ratio 0.50, nobody to compare with
    _losses(study, "B1-MAX", [0.42])
    assert build_table(study)["trained"].tolist() == [False, True]


def test_frozen_feature_runs_show_their_pixel_crop_and_head_only_rate(tmp_path):
    import dataclasses

    from study.record import read_record, write_record

    study = fabricate(tmp_path, {"FCN": [0.5, 0.6]})
    for seed in (0, 1):
        path = study / "runs" / f"FCN__s{seed}" / "record.json"
        rec = read_record(path)
        config = {**rec.config, "model": {**rec.config["model"], "freeze_backbone": True, "output_stride": 8},
                  "data": {**rec.config["data"], "feature_crop": [32, 40]}}
        write_record(dataclasses.replace(rec, config=config, throughput={**rec.throughput, "head_train_img_s": 50.0 + seed}),
                     path.parent)
    df = build_table(study)
    assert df["crop"].tolist() == ["256x320", "256x320"]  # 32 x 40 stored-map cells at stride 8
    assert df["head_train_img_s"].tolist() == [50.0, 51.0]
    assert "head_train_img_s" not in build_table(fabricate(tmp_path / "other", {"FCN": [0.5]}))
