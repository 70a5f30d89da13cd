"""Precision and memory format per device: flags read from /proc/cpuinfo, the rule, its override and reason."""

import dataclasses

import torch

from study.config import TrainConfig, config_hash
from study.config_files import load_config
from study.device import NARROW, cpu_flags, cpu_kind, resolve, widest_conv

CPU = torch.device("cpu")
AVX2 = frozenset({"fma", "avx", "avx2"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_tile"}


def test_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\n"
                   "flags\t\t: fpu avx2 fma amx_bf16\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "fma"}  # the first processor's
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(arm) == {"fp", "asimd", "bf16"}
    assert cpu_flags(tmp_path / "missing") is None


def test_cpu_kind_takes_the_strongest_bf16_path():
    assert [cpu_kind(f) for f in (AMX, AVX512_BF16, AVX512, AVX2, frozenset({"sse2"}), None)] == \
        ["amx_bf16", "avx512_bf16", "avx512", "avx2", "other", "unknown"]


def test_cpu_rule_keeps_bf16_and_channels_last_only_where_they_pay():
    tc = TrainConfig()  # amp and channels_last on, as every shipped config
    got = {name: resolve(CPU, tc, 2048, flags, torch_bf16=bf16)  # a wide model: ResNet-50's 2048 channels
           for name, flags, bf16 in (("amx", AMX, True), ("avx512_bf16", AVX512_BF16, True),
                                     ("avx512", AVX512, True), ("avx2", AVX2, False))}
    assert {n: (s.dtype, s.channels_last) for n, s in got.items()} == {
        "amx": ("bfloat16", True), "avx512_bf16": ("bfloat16", False),
        "avx512": ("float32", False), "avx2": ("float32", False)}
    assert got["avx2"].hardware == "cpu (avx2, no native bf16)" and got["amx"].hardware == "cpu (amx_bf16)"
    assert "bf16 would be emulated" in got["avx512"].why
    assert got["avx2"].why.endswith(f"NCHW (fp32, widest conv 2048 channels: channels_last pays only up to {NARROW})")
    assert got["amx"].why == "bf16 autocast (amx_bf16), channels_last (pays with bf16 on AMX)"
    assert not any(s.forced for s in got.values())


def test_in_fp32_narrow_models_get_channels_last_and_wide_or_unknown_ones_nchw():
    tc = TrainConfig()
    assert resolve(CPU, tc, NARROW, AVX2, torch_bf16=False).channels_last
    assert "narrow model: widest conv 128 <= 128 channels" in resolve(CPU, tc, 128, AVX2, torch_bf16=False).why
    assert not resolve(CPU, tc, NARROW + 1, AVX2, torch_bf16=False).channels_last
    unknown = resolve(CPU, tc, None, AVX2, torch_bf16=False)
    assert not unknown.channels_last and "model width unknown" in unknown.why
    assert resolve(CPU, TrainConfig(amp=False), 32, AMX, torch_bf16=True).channels_last  # fp32 on AMX: by width
    zen4 = resolve(CPU, tc, 32, AVX512_BF16, torch_bf16=True)  # bf16 without AMX: by width too (measured on Zen 4)
    assert (zen4.dtype, zen4.channels_last) == ("bfloat16", True) and "bf16 without AMX, narrow model" in zen4.why
    wide = resolve(CPU, tc, NARROW + 1, AVX512_BF16, torch_bf16=True)
    assert not wide.channels_last and "channels_last measured to pay only up to 128" in wide.why
    assert not resolve(CPU, TrainConfig(channels_last=False), 32, AVX2, torch_bf16=False).channels_last


def test_widest_conv_reads_the_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 1))
    assert widest_conv(model) == 16
    assert widest_conv(torch.nn.Linear(2, 2)) is None


def test_switches_off_stay_off_and_fp32_on_amx_is_nchw_for_wide_models():
    s = resolve(CPU, TrainConfig(amp=False), 2048, AMX, torch_bf16=True)
    assert (s.dtype, s.channels_last) == ("float32", False) and s.why.startswith("fp32 (train.amp off)")
    s = resolve(CPU, TrainConfig(channels_last=False), 2048, AMX, torch_bf16=True)
    assert (s.dtype, s.channels_last) == ("bfloat16", False) and "train.channels_last off" in s.why


def test_force_settings_takes_the_switches_as_set():
    forced = TrainConfig(force_settings=True)
    s = resolve(CPU, forced, 2048, AVX2, torch_bf16=False)
    assert (s.dtype, s.channels_last, s.forced) == ("float32", True, True)  # no bf16 in torch: still fp32
    s = resolve(CPU, forced, 2048, AVX512, torch_bf16=True)
    assert (s.dtype, s.channels_last) == ("bfloat16", True)
    assert "train.force_settings" in s.why


def test_unreadable_flags_fall_back_to_torchs_check_and_gpus_keep_channels_last():
    s = resolve(CPU, TrainConfig(), 2048, None, torch_bf16=True)
    assert (s.dtype, s.channels_last) == ("bfloat16", False) and "unreadable" in s.why
    g = resolve(torch.device("cuda"), TrainConfig(), torch_bf16=True)
    assert (g.dtype, g.channels_last) == ("bfloat16", True) and g.hardware.startswith("cuda")
    g = resolve(torch.device("cuda"), TrainConfig(amp=False), torch_bf16=True)
    assert g.dtype == "float32" and "train.amp off" in g.why


def test_autocast_and_memory_format_follow_the_choice():
    bf16 = resolve(CPU, TrainConfig(force_settings=True), 2048, AMX, torch_bf16=True)
    fp32 = resolve(CPU, TrainConfig(), 2048, AVX2, torch_bf16=False)
    x = torch.randn(4, 4)
    with bf16.autocast(CPU):
        assert (x @ x).dtype == torch.bfloat16  # torch can always run bf16 on a CPU, if slowly
    with fp32.autocast(CPU):
        assert (x @ x).dtype == torch.float32
    assert bf16.memory_format == torch.channels_last and fp32.memory_format == torch.contiguous_format
    assert bf16.label() == "bf16 channels_last" and fp32.label() == "fp32 NCHW"


def test_force_settings_is_an_added_field():
    cfg = load_config(None, [])
    assert cfg.train.force_settings is False
    forced = cfg.replace(train=dataclasses.replace(cfg.train, force_settings=True))
    assert config_hash(forced) != config_hash(cfg)
    assert config_hash(load_config(None, ["train.force_settings=false"])) == config_hash(cfg)
