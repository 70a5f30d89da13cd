import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model

from study.config import ModelConfig
from study.models.build import build_model


def tiny(**kw) -> ModelConfig:
    """conftest's tiny network on the last two stages (3, 4), head 16, aux 0.4 (the ModelConfig defaults)."""
    return tiny_model(**{"out_indices": (3, 4), "head_channels": 16, "aux_weight": 0.4, **kw})


CASES = list(itertools.product([(), (1,), (1, 2, 3, 6)], ["avg", "max"], [True, False], [0.0, 0.4], [8, 16]))


@pytest.mark.parametrize("bins, pool, reduction, aux, stride", CASES)
def test_shapes_over_every_axis(bins, pool, reduction, aux, stride):
    cfg = tiny(bins=bins, pool=pool, reduction=reduction, aux_weight=aux, output_stride=stride)
    model = build_model(cfg, num_classes=5)
    x = torch.randn(2, 3, 48, 40)
    out = model.train()(x)
    assert out["out"].shape == (2, 5, 48, 40)
    assert ("aux" in out) == (aux > 0)
    if aux:
        assert out["aux"].shape == (2, 5, 48, 40)
    assert set(model.eval()(x)) == {"out"}
    c = model.backbone.feature_info.channels()[-1]
    expected = c if not bins else (2 * c if reduction else c * (1 + len(bins)))
    assert model.head[0].in_channels == expected
    reductions = model.backbone.feature_info.reduction()
    assert reductions[-1] == stride


def test_fcn_baseline_has_no_pyramid_and_no_aux_parameters():
    fcn = build_model(tiny(ppm=False, aux_weight=0.0), 4)
    psp = build_model(tiny(aux_weight=0.0), 4)
    assert fcn.ppm is None and fcn.aux_head is None
    assert not any(name.startswith(("ppm", "aux_head")) for name, _ in fcn.named_parameters())
    assert sum(p.numel() for p in psp.ppm.parameters()) > 0
    assert build_model(tiny(bins=()), 4).ppm is None


def test_channels_follow_feature_info():
    model = build_model(tiny(channels=(8, 16, 48, 96), reduction=False, bins=(1, 2)), 3)
    assert model.backbone.feature_info.channels() == [48, 96]
    assert model.head[0].in_channels == 96 * 3 and model.aux_head[0].in_channels == 48


def test_probe_backbone_two_stages():
    cfg = tiny_model(channels=(16, 32, 64, 128), stem_width=16, head_channels=32)
    model = build_model(cfg, 4)
    assert model.backbone.feature_info.channels() == [16, 32]
    assert model.backbone.feature_info.reduction() == [4, 8]
    assert model.eval()(torch.randn(1, 3, 64, 64))["out"].shape == (1, 4, 64, 64)


def test_resnet50s_gives_the_papers_channels():
    model = build_model(ModelConfig(backbone="resnet50s", out_indices=(3, 4)), 150)
    assert model.backbone.feature_info.channels() == [1024, 2048]
    assert model.ppm.out_channels == 4096 and model.aux_head[0].in_channels == 1024


def test_gradients_reach_every_parameter():
    model = build_model(tiny(aux_weight=0.4), 3).train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    out = model(x)
    (F.cross_entropy(out["out"], y) + 0.4 * F.cross_entropy(out["aux"], y)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("ppm"))


def test_param_groups_cover_each_parameter_once():
    model = build_model(tiny(), 3)
    groups = model.param_groups()
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in model.backbone.parameters()}
    new = {id(p) for p in groups["new"]}
    assert all(id(p) in new for p in model.ppm.parameters()) and all(id(p) in new for p in model.head.parameters())


def test_pretrained_backbone_from_a_local_file(tmp_path):
    source = build_model(tiny(), 3)
    path = tmp_path / "backbone.pt"
    torch.save({"state_dict": source.backbone.state_dict()}, path)
    model = build_model(tiny(pretrained=str(path)), 3)
    for (name, a), b in zip(source.backbone.state_dict().items(), model.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="model.pretrained: checkpoint .* not found"):
        build_model(tiny(pretrained=str(tmp_path / "nope.pt")), 3)
    torch.save({"unrelated.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no weight"):
        build_model(tiny(pretrained=str(tmp_path / "other.pt")), 3)


def test_pretrained_loading_is_strict_and_reports_its_source(tmp_path, capsys):
    from study.models.backbone import file_sha256, pretrained_source

    assert pretrained_source(tiny()) == "from scratch"
    state = build_model(tiny(), 3).backbone.state_dict()
    full = tmp_path / "resnet_tiny.pth"
    torch.save({"module." + k: v for k, v in state.items()}, full)  # a DataParallel prefix is dropped
    build_model(tiny(pretrained=str(full)), 3)
    assert f"{len(state)}/{len(state)} backbone tensors matched in resnet_tiny.pth" in capsys.readouterr().out
    assert pretrained_source(tiny(pretrained=str(full))) == f"pretrained (resnet_tiny.pth, sha256 {file_sha256(full)[:8]})"
    keys = list(state)
    half = tmp_path / "half.pth"
    torch.save({k: state[k] for k in keys[: len(keys) // 2]}, half)
    with pytest.raises(ValueError, match=f"model.pretrained: {half} matches only {len(keys) // 2}/{len(keys)}") as e:
        build_model(tiny(pretrained=str(half)), 3)
    assert "\n" not in str(e.value) and "pretrained_partial" in str(e.value)
    model = build_model(tiny(pretrained=str(half), pretrained_partial=True), 3)
    assert torch.equal(model.backbone.state_dict()[keys[0]], state[keys[0]])
    with pytest.raises(ValueError, match="model.pretrained: checkpoint .* not found"):
        pretrained_source(tiny(pretrained=str(tmp_path / "nope.pth")))


def test_unknown_backbone_is_one_line():
    with pytest.raises(ValueError, match="model.backbone"):
        build_model(tiny(backbone="no_such_net"), 3)


def test_raw_branch_is_a_separately_named_option():
    from study.config import ConfigError

    model = build_model(tiny(bins=(1, 2), reduction=False, ppm_branch="raw"), 3)
    assert model.ppm.spec.branch == "raw" and sum(p.numel() for p in model.ppm.parameters()) == 0
    assert model.head[0].in_channels == 64 * 3
    no_dr = build_model(tiny(bins=(1, 2), reduction=False), 3)
    assert no_dr.ppm.spec.branch == "conv" and no_dr.head[0].in_channels == 64 * 3
    assert sum(p.numel() for p in no_dr.ppm.parameters()) == 2 * (64 * 64 + 2 * 64)
    with pytest.raises(ConfigError, match="model.ppm_branch"):
        tiny(bins=(1,), ppm_branch="raw", reduction=True).validate()
    with pytest.raises(ConfigError, match="model.ppm_branch"):
        tiny(ppm_branch="none").validate()


def test_frozen_backbone_bn_keeps_its_statistics_and_trains_the_rest():
    from torch import nn

    model = build_model(tiny(backbone_bn="frozen", aux_weight=0.4), 3).train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.backbone.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.head.modules())  # new layers keep batch norm
    before = {k: v.clone() for k, v in model.backbone.state_dict().items() if "running" in k or "bn" in k}
    head_stats = model.head[1].running_mean.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(torch.randn(2, 3, 32, 32) * 3 + 1)
    (out["out"].mean() + out["aux"].mean()).backward()
    opt.step()
    after = model.backbone.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(head_stats, model.head[1].running_mean)
    assert model.backbone.conv1[0].weight.grad is not None  # convolutions still learn
    default = build_model(tiny(), 3)
    assert any(isinstance(m, nn.BatchNorm2d) for m in default.backbone.modules())
    with pytest.raises(ValueError, match="model.backbone_bn"):
        tiny(backbone_bn="sync").validate()


def test_ppm_norm_reaches_every_branch():
    from study.config import ConfigError
    from study.models.pspnet import PSPNet

    plain = build_model(tiny(bins=(1, 2), reduction=False, ppm_norm="none"), 3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.ppm.modules())
    assert sum(p.numel() for p in plain.ppm.parameters()) == 2 * (64 * 64 + 64)  # conv weights + biases
    gn = build_model(tiny(bins=(1, 2), reduction=False, ppm_norm="gn"), 3)
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in gn.ppm.modules()) == 2
    with pytest.raises(ConfigError, match="model.ppm_norm"):
        tiny(bins=(1,), reduction=False, ppm_branch="raw", ppm_norm="none").validate()
    with pytest.raises(TypeError):
        PSPNet(plain.backbone, 3, (1,))  # arguments after num_classes are keyword-only


def test_a_twin_redraws_the_pyramid_and_heads_and_keeps_the_backbone():
    from study.models.build import redraw_new_layers

    def built(twin: int):
        torch.manual_seed(7)
        model = build_model(tiny(bins=(1, 2), aux_weight=0.4), num_classes=3)
        redraw_new_layers(model, 7, twin)
        return model.state_dict(), torch.rand(1)  # and where the global stream (dropout masks) stands

    (plain, after0), (one, after1), (one_again, after1_again), (two, _) = (built(t) for t in (0, 1, 1, 2))
    backbone = [k for k in plain if k.startswith("backbone.")]
    new = [k for k in plain if k.split(".")[0] in ("ppm", "head", "aux_head") and plain[k].is_floating_point()
           and not k.endswith(("running_var", "running_mean")) and plain[k].std() > 0]
    assert backbone and {k.split(".")[0] for k in new} == {"ppm", "head", "aux_head"}
    assert all(torch.equal(plain[k], one[k]) and torch.equal(plain[k], two[k]) for k in backbone)
    assert all(not torch.equal(plain[k], one[k]) and not torch.equal(one[k], two[k]) for k in new)
    assert all(torch.equal(one[k], one_again[k]) for k in one) and torch.equal(after1, after1_again)
    assert not torch.equal(after0, after1)  # the twin's dropout masks come from its own stream


@pytest.mark.parametrize("corners, stride", [(True, 2), (False, 2), (True, 3)])
def test_sampled_logits_are_the_full_size_logits_at_those_pixels(corners, stride):
    torch.manual_seed(0)
    model = build_model(tiny(dropout=0.0, align_corners=corners), 4).train()  # aux on; no dropout to redraw
    x = torch.randn(2, 3, 48, 40)
    full, sampled = model(x), model(x, sample_stride=stride)
    for key in ("out", "aux"):
        assert sampled[key].shape == (2, 4, -(-48 // stride), -(-40 // stride))
        torch.testing.assert_close(sampled[key], full[key][..., ::stride, ::stride], rtol=1e-5, atol=1e-5)


def test_sampled_bilinear_weights_by_hand():
    from study.models.pspnet import sampled_bilinear_weights

    # 3 points up to 5 with aligned corners sit at 0, 0.5, 1, 1.5, 2; every second one is an input point itself
    assert sampled_bilinear_weights(3, 5, 2, True).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert sampled_bilinear_weights(3, 5, 1, True)[1].tolist() == [0.5, 0.5, 0]
    # without: output point j of 2 -> 4 sits at input j / 2 - 0.25, clamped at 0: point 0 at 0, point 2 at 0.75
    assert sampled_bilinear_weights(2, 4, 2, False).tolist() == [[1, 0], [0.25, 0.75]]
