"""The throughput protocol: FLOP counting against hand-computed values, percentiles, and the reported fields."""

import pytest
import torch
from torch import nn

from study.config_files import load_config
from study.throughput.bench import _percentile, benchmark, count_flops


class TwoConvs(nn.Module):
    """A stand-in with a `ppm` submodule: 1x1 conv 3->4, then the 'pyramid' 1x1 conv 4->2."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1, bias=False)
        self.ppm = nn.Conv2d(4, 2, 1, bias=False)

    def forward(self, x):
        return {"out": self.ppm(self.stem(x))}


def test_flops_of_the_model_and_of_its_pyramid():
    total, ppm = count_flops(TwoConvs(), torch.zeros(1, 3, 8, 8))
    assert ppm == 2 * 4 * 2 * 64  # 2 x Cin x Cout x H x W for a 1x1 convolution
    assert total == 2 * 3 * 4 * 64 + ppm


def test_percentile_interpolates_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert _percentile(values, 50) == 3.0
    assert _percentile(values, 95) == 4.8
    assert _percentile([7.0], 95) == 7.0


def test_benchmark_reports_the_protocol_and_leaves_the_weights_alone():
    cfg = load_config(None, ["bench.batch_size=2", "bench.image_size=[16, 16]", "bench.warmup=1", "bench.iters=2",
                             "bench.repeats=3", "bench.latency_iters=4", "train.amp=false",
                             "bench.peak_seconds=0.02"])
    model = TwoConvs()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = benchmark(model, cfg, torch.device("cpu"), num_classes=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert t["train_img_s_min"] <= t["train_img_s"] <= t["train_img_s_max"]
    assert t["infer_img_s_min"] <= t["infer_img_s"] <= t["infer_img_s_max"] and t["infer_img_s"] > 0
    assert 0 < t["latency_ms_p50"] <= t["latency_ms_p95"]
    assert t["params_m"] == (12 + 8) / 1e6
    assert t["gflops"] == (2 * 3 * 4 + 2 * 4 * 2) * 256 / 1e9 and t["ppm_gflops"] == 2 * 4 * 2 * 256 / 1e9
    assert t["mfu"] is None and t["dtype"] == "float32" and t["device"] == "cpu" and t["peak_mem_mb"] > 0
    assert t["settings"]["dtype"] == "float32" and t["channels_last"] is t["settings"]["channels_last"]
    # achieved FLOP/s: 3x the forward FLOPs per training image, as a share of the peak measured in this process
    assert t["train_gflop_s"] == pytest.approx(3 * t["gflops"] * t["train_img_s"])
    assert t["utilisation_train"] == pytest.approx(t["train_gflop_s"] / t["peak"]["peak_gflop_s"])
    assert t["utilisation_infer"] == pytest.approx(t["infer_gflop_s"] / t["peak"]["peak_gflop_s"])
    assert t["batch_size"] == 2 and t["image_size"] == [16, 16] and "ru_maxrss" in t["memory_kind"]


def test_bench_matrix_settings_and_ratios():
    from study.throughput.matrix import SETTINGS, ratios, setting_overrides, table

    assert list(SETTINGS) == ["fp32", "bf16", "fp32+channels_last", "bf16+channels_last", "default+compile"]
    assert setting_overrides("bf16") == ["train.amp=true", "train.channels_last=false", "train.compile=false",
                                         "train.force_settings=true"]  # every row is what it says
    assert setting_overrides("default+compile") == ["train.compile=true"]  # what this machine picks, compiled
    row = {"dtype": "float32", "latency_ms_p50": 1.0, "peak_mem_mb": 10.0}
    results = {"fp32": {**row, "train_img_s": 2.0, "infer_img_s": 4.0},
               "bf16": {**row, "dtype": "bfloat16", "train_img_s": 6.0, "infer_img_s": 20.0},
               "default+compile": {"skipped": "took longer than 120 s"}}
    assert ratios(results)["bf16"] == {"train_img_s": 3.0, "infer_img_s": 5.0}
    assert ratios(results)["default+compile"] == {"train_img_s": None, "infer_img_s": None}
    text = table(results)
    assert "3.00x" in text and "5.00x" in text and "skipped: took longer than 120 s" in text


def test_bench_matrix_names_the_default_row_and_the_fastest():
    from study.device import Speed
    from study.throughput.matrix import auto_row, verdict

    row = {"latency_ms_p50": 1.0, "peak_mem_mb": 10.0}
    results = {"fp32": {**row, "dtype": "float32", "train_img_s": 10.0, "infer_img_s": 1.0},
               "bf16": {"skipped": "no bf16 on this device (the row would repeat an fp32 row)"},
               "fp32+channels_last": {**row, "dtype": "float32", "train_img_s": 8.0, "infer_img_s": 1.0},
               "default+compile": {**row, "dtype": "float32", "train_img_s": 12.0, "infer_img_s": 1.0}}
    nchw = Speed("float32", False, "cpu (avx2, no native bf16)", "why")
    assert auto_row(results, nchw) == "fp32"
    assert verdict(results, nchw) == ("default (fp32 NCHW) is the row fp32; fastest for training: default+compile, "
                                      "1.20x the default's img/s")
    del results["default+compile"]
    assert verdict(results, nchw).endswith("the fastest measured row for training")
    assert auto_row(results, Speed("bfloat16", True, "cpu (amx_bf16)", "why")) is None


def test_bench_matrix_rounds_take_medians_of_within_round_ratios():
    from study.throughput.matrix import summarize, table

    row = {"dtype": "float32", "latency_ms_p50": 1.0, "peak_mem_mb": 10.0}

    def rnd(fp32, bf16):  # contention slows both settings of a round alike
        return {"fp32": {**row, "train_img_s": fp32, "infer_img_s": fp32},
                "bf16": {**row, "train_img_s": bf16, "infer_img_s": bf16}}

    summary, rel = summarize([rnd(10, 30), rnd(2, 5), rnd(4, 8)])
    assert summary["fp32"]["train_img_s"] == 4 and summary["bf16"]["train_img_s"] == 8
    assert rel["bf16"]["train_img_s"] == 2.5 and rel["bf16"]["train_img_s_range"] == [2.0, 3.0]
    assert "2.50x (2.00-3.00)" in table(summary, rel)


@pytest.mark.slow  # a benchmark process per setting
def test_bench_matrix_command_measures_each_setting_in_its_own_process(tmp_path):
    import json

    from conftest import write_tiny_yaml

    from study.throughput.matrix import main

    config = write_tiny_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "m.json"
    assert main([str(config), "bench.repeats=1", "--settings", "bf16", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data["results"]) == ["fp32", "bf16"]  # fp32 is always measured: the reference
    assert data["default"]["why"] and data["default_row"] in ("fp32", "bf16", None)
    from study.env import bf16_supported

    if not bf16_supported(torch.device("cpu")):
        assert "no bf16 on this device" in data["results"]["bf16"]["skipped"]
    assert data["results"]["fp32"]["dtype"] == "float32" and data["ratios_vs_fp32"]["fp32"]["train_img_s"] == 1.0
    assert len(data["rounds"]) == 1
    assert main([str(config), "--settings", "fp16"]) == 2


def test_a_batch_of_one_times_training_on_two_images_through_the_pyramids_1x1_bin(tiny_cfg):
    """BatchNorm in training mode cannot run on one value per channel (a 1x1 bin of one image): training is timed
    on 2 images and the record says so; inference and latency keep bench.batch_size."""
    import torch

    from study.models.build import build_model
    from study.throughput.bench import benchmark

    cfg = tiny_cfg("bench.batch_size=1", "model.bins=[1, 2]", "model.reduction=true", "bench.peak_seconds=0")
    result = benchmark(build_model(cfg.model, 4), cfg, torch.device("cpu"), 4)
    assert result["batch_size"] == 1 and result["train_batch_size"] == 2 and result["train_img_s"] > 0
