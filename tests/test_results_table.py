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
                "gflops", "train_seconds", "eval_seconds", "config_hash", "git_sha", "device", "error",
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
    (study / "runs.parquet").write_bytes(b"garbage")
    os.utime(study / "runs.parquet", ns=(2**62, 2**62))  # newer than every record: read, not rebuilt
    with pytest.raises(ResultsError, match="unreadable table"):
        read_table(study)


def test_results_modules_never_import_torch():
    code = ("import sys; import study.results.table, study.results.stats, study.results.claims, "
            "study.report.render, study.report.plots, study.report.__main__; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
