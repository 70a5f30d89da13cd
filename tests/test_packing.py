"""The packing measurement (study.throughput.packing, study.throughput.packed_step; not part of the product): the
packed step it times is K separate steps, it runs and reports a ratio, and its verdict needs a real speed-up."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from study.config_files import load_config
from study.throughput.packed_step import Packed, packed_step
from study.throughput.packing import PAYS, members, verdict


def test_a_packed_step_is_k_separate_steps():
    """Two members, fp32, dropout off (a packed member draws its own masks, not the separate run's): the same
    losses, parameters, momentum and batch-norm statistics as two models stepped alone, after three steps."""
    cfg = load_config(None, [*TINY, "model.dropout=0.0", "model.aux_weight=0.0"])
    k, classes = 2, 3
    alone = members(cfg, k, classes)
    packed = Packed(members(cfg, k, classes))
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4) for m in alone]
    popt = torch.optim.SGD(list(packed.params.values()), lr=0.05, momentum=0.9, weight_decay=1e-4)
    torch.manual_seed(0)
    for _ in range(3):
        images, targets = torch.randn(k, 2, 3, 32, 32), torch.randint(0, classes, (k, 2, 32, 32))
        losses = []
        for i, (m, o) in enumerate(zip(alone, opts, strict=True)):
            loss = F.cross_entropy(m(images[i])["out"], targets[i])
            o.zero_grad()
            loss.backward()
            o.step()
            losses.append(loss.detach())
        together = packed_step(packed, popt, images, targets, contextlib.nullcontext())
        assert together == pytest.approx(float(sum(losses)), rel=1e-5)
    for i, m in enumerate(alone):
        for name, p in m.named_parameters():
            assert torch.allclose(packed.params[name][i], p, atol=1e-5), name
        for name, b in m.named_buffers():
            if b.is_floating_point():
                assert torch.allclose(packed.buffers[name][i], b, atol=1e-5), name


def test_a_pack_of_channels_last_members_under_bf16_is_nchw_with_fp32_batch_norm():
    """Members laid out channels_last (as a run on a GPU lays them out) stack into NCHW tensors, and batch norm in
    the pack reads fp32 under bf16 autocast: on CUDA, vmap's batch norm refused both (the GPU check's failures).
    The pack's bf16 step still follows the members' own bf16 forward closely."""
    cfg = load_config(None, [*TINY, "model.dropout=0.0", "model.aux_weight=0.0"])
    k, classes = 2, 3
    alone = [m.to(memory_format=torch.channels_last) for m in members(cfg, k, classes)]
    packed = Packed([m.to(memory_format=torch.channels_last) for m in members(cfg, k, classes)])
    assert all(t.is_contiguous() for t in [*packed.params.values(), *packed.buffers.values()])
    seen = []
    bn = next(m for m in packed.base.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))
    torch.manual_seed(0)
    images, targets = torch.randn(k, 2, 3, 32, 32), torch.randint(0, classes, (k, 2, 32, 32))
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.no_grad(), bf16:
        together = packed(images)["out"].float()
        apart = torch.stack([m(images[i].contiguous(memory_format=torch.channels_last))["out"].float()
                             for i, m in enumerate(alone)])
    assert seen == [(torch.float32, torch.float32)]
    assert (together - apart).abs().max() < 0.1 * apart.abs().max()
    popt = torch.optim.SGD(list(packed.params.values()), lr=0.05)
    assert torch.isfinite(packed_step(packed, popt, images, targets, bf16))


def test_the_verdict_needs_a_real_speed_up():
    row = {"members": 2, "ratio": 0.4}
    assert verdict([row, {**row, "members": 4, "ratio": 0.3}])[0] == 1
    assert "packing does not pay here (best 0.40x at K=2" in verdict([row])[1]
    assert verdict([row, {"members": 4, "ratio": PAYS + 0.5}]) == (
        4, f"packing pays here: {PAYS + 0.5:.2f}x a member's step at K=4 (the product still trains one run at a time)")
    assert verdict([{"members": 8, "ratio": PAYS}])[0] == 8


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_the_command_measures_a_tiny_config_and_reports_a_ratio(tmp_path, capsys):
    from study.throughput.packing import main

    out = tmp_path / "packing.json"
    assert main(["configs/probe.yaml", "model.ppm=false", "train.batch_size=2", "data.crop_size=[32,32]",
                 "--members", "2", "--rounds", "1", "--steps", "1", "--out", str(out)]) == 0
    import json

    saved = json.loads(out.read_text())
    assert saved["rows"][0]["members"] == 2 and saved["rows"][0]["ratio"] > 0 and saved["members"] in (1, 2)
    row = saved["rows"][0]
    assert row["step_gflop"] > 0 and row["peak_gflop_s"] > 0 and 0 < row["separate_share"] and 0 < row["packed_share"]
    assert row["separate_gflop_s"] / row["packed_gflop_s"] == pytest.approx(row["packed_ms"] / row["separate_ms"])
    printed = capsys.readouterr().out
    assert f"K=2: separate {row['separate_ms']:.1f} ms, packed {row['packed_ms']:.1f} ms a member's step: " \
           f"{row['ratio']:.2f}x" in printed and "verdict: packing " in printed
    assert main(["configs/probe.yaml", "--members", "1"]) == 2
    assert main(["configs/probe.yaml", "--device", "tpu"]) == 2


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_frozen_feature_heads_are_measured_on_stored_maps():
    """With model.freeze_backbone the members are heads on maps (channels of the backbone's stages, the feature
    crop in cells) and the labels are at output stride x that: what a frozen-feature run trains."""
    from study.features.head import FrozenFeatureHead
    from study.throughput.packing import inputs, measure

    cfg = load_config(None, [*TINY, "model.freeze_backbone=true", "model.backbone_bn=frozen", "model.output_stride=8",
                             "data.augment=[]", "data.feature_crop=[2, 3]", "train.batch_size=2"])
    heads = members(cfg, 2, 3)
    assert all(isinstance(m, FrozenFeatureHead) for m in heads)
    x, y = inputs(cfg, heads[0], 2, 3, torch.device("cpu"))
    assert x.shape == (2, 2, sum(heads[0].splits), 2, 3) and y.shape == (2, 2, 16, 24)
    (row,) = measure(cfg, [2], rounds=1, steps=1, num_classes=3)
    assert row["members"] == 2 and row["ratio"] > 0


def test_only_the_measurement_imports_packing():
    """Packing is a measurement, not a way the product trains: no module outside study/throughput/ imports it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "study"
    pattern = re.compile(r"^\s*(from|import)\s+study\.throughput(\.|\s+import\s+)(packing|packed_step)\b", re.M)
    outside = [str(p.relative_to(root)) for p in root.rglob("*.py")
               if p.parent.name != "throughput" and pattern.search(p.read_text())]
    assert outside == []
    assert not (root / "train" / "packed.py").exists()
