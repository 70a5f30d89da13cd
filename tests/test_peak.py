"""The machine's measured peak and the datasheet table of known GPUs."""

import torch

from study.throughput.peak import best_of, lookup, measure_peak, nominal_peak


def test_datasheet_peaks_by_name_and_kind():
    assert lookup("NVIDIA H200", "bfloat16")[0] == 989.4
    assert lookup("NVIDIA H100 80GB HBM3", "tf32")[0] == 494.7
    assert lookup("NVIDIA H100 PCIe", "bfloat16")[0] == 756.0  # not the SXM part
    assert lookup("NVIDIA A100-SXM4-80GB", "bfloat16")[0] == 312.0
    assert lookup("NVIDIA A10", "float32")[0] == 31.2  # not taken for an A100
    value, why = lookup("NVIDIA GeForce GTX 1080", "bfloat16")
    assert value is None and "unknown" in why
    assert nominal_peak(torch.device("cpu"), "float32")[0] is None


def test_measured_peak_times_a_matmul_and_a_convolution():
    p = measure_peak(torch.device("cpu"), "float32", seconds=0.05)
    assert p["matmul_gflop_s"] > 0 and p["conv3x3_gflop_s"] > 0
    assert p["peak_gflop_s"] == max(p["matmul_gflop_s"], p["conv3x3_gflop_s"])
    assert p["dtype"] == "float32" and p["memory_format"] == "NCHW" and p["threads"] == torch.get_num_threads()


def test_best_of_takes_each_kernels_fastest_measurement():
    a = {"dtype": "float32", "matmul_gflop_s": 10.0, "conv3x3_gflop_s": 30.0, "peak_gflop_s": 30.0}
    b = {"dtype": "float32", "matmul_gflop_s": 40.0, "conv3x3_gflop_s": 20.0, "peak_gflop_s": 40.0}
    best = best_of(a, b)
    assert (best["matmul_gflop_s"], best["conv3x3_gflop_s"], best["peak_gflop_s"]) == (40.0, 30.0, 40.0)
    assert best["measurements"] == 2 and a["matmul_gflop_s"] == 10.0  # inputs untouched
