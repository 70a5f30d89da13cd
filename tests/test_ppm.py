import dataclasses

import pytest
import torch
import torch.nn.functional as F

from study.config import PYRAMID_KEYS, ConfigError, ModelConfig, PyramidSpec
from study.models.ppm import PyramidPooling


def test_output_is_input_then_branches_in_bin_order():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 12)
    ppm = PyramidPooling(8, PyramidSpec(bins=(1, 2, 3, 6), pool="avg", reduction=False, branch="raw")).eval()
    y = ppm(x)
    assert y.shape == (2, 8 * 5, 12, 12)
    assert torch.equal(y[:, :8], x)
    # bin 1 without reduction: every pixel of the branch is the channel mean
    assert torch.allclose(y[:, 8:16], x.mean((2, 3), keepdim=True).expand(-1, -1, 12, 12), atol=1e-6)


def test_reduction_gives_c_over_n_channels_per_branch():
    ppm = PyramidPooling(64, PyramidSpec(bins=(1, 2, 3, 6), reduction=True))
    assert ppm.out_channels == 128 and ppm(torch.randn(2, 64, 9, 9)).shape == (2, 128, 9, 9)
    convs = [m for m in ppm.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.out_channels == 16 and c.kernel_size == (1, 1) and c.bias is None for c in convs)
    assert PyramidPooling(64, PyramidSpec(bins=(1,), reduction=True)).out_channels == 128


def test_without_dr_every_branch_keeps_conv_bn_relu_at_full_width():
    # the official code with one bin: pool -> 1x1 conv (C -> C) -> BN -> ReLU; DR only changes the width
    ppm = PyramidPooling(64, PyramidSpec(bins=(1, 2, 3, 6), reduction=False))
    assert ppm.out_channels == 64 * 5 and ppm(torch.randn(2, 64, 9, 9)).shape == (2, 320, 9, 9)
    for branch in ppm.branches:
        kinds = [type(m).__name__ for m in branch]
        assert kinds[1:] == ["Conv2d", "BatchNorm2d", "ReLU"]
        assert branch[1].in_channels == 64 and branch[1].out_channels == 64
    # the branch is normalised: after ReLU the outputs are >= 0 and the raw global max does not pass through
    x = torch.randn(4, 64, 9, 9) * 5
    y = PyramidPooling(64, PyramidSpec(bins=(1,), pool="max", reduction=False)).train()(x)
    assert (y[:, 64:] >= 0).all() and not torch.allclose(y[:, 64:], x.amax((2, 3), keepdim=True).expand_as(x))


def test_branch_norm_none_and_gn():
    # none: pool -> 1x1 conv with bias -> ReLU (no norm); gn: GroupNorm over groups of 8 channels, per image
    plain = PyramidPooling(16, PyramidSpec(bins=(1, 2), reduction=False, norm="none"))
    for branch in plain.branches:
        assert [type(m).__name__ for m in branch][1:] == ["Conv2d", "ReLU"] and branch[1].bias is not None
    x = torch.randn(3, 16, 6, 6)
    conv = plain.branches[0][1]
    want = torch.relu(conv(x.mean((2, 3), keepdim=True)))  # bin 1, avg: conv + bias + ReLU of the means
    assert torch.allclose(plain.train()(x)[:, 16:32], want.expand(-1, -1, 6, 6), atol=1e-6)
    gn = PyramidPooling(16, PyramidSpec(bins=(1,), reduction=False, norm="gn"))
    norm = gn.branches[0][2]
    assert isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == 2
    # per image: one image's branch output does not depend on the rest of the batch (BN's does)
    y_batch, y_alone = gn.train()(x)[:1], gn.train()(x[:1])
    assert torch.allclose(y_batch, y_alone, atol=1e-6)
    bn = PyramidPooling(16, PyramidSpec(bins=(1,), reduction=False)).train()
    assert not torch.allclose(bn(x)[:1, 16:], bn(x[:2])[:1, 16:], atol=1e-4)
    with pytest.raises(ValueError, match="norm"):
        PyramidPooling(16, PyramidSpec(bins=(1,), norm="ln"))
    with pytest.raises(ValueError, match="norm"):
        PyramidPooling(16, PyramidSpec(bins=(1,), reduction=False, branch="raw", norm="none"))


def test_the_options_come_as_one_spec():
    with pytest.raises(TypeError, match="PyramidSpec"):
        PyramidPooling(8, (1, 2))
    assert PyramidPooling(8).spec == PyramidSpec() == PyramidSpec(bins=[1, 2, 3, 6])  # bins become a tuple
    with pytest.raises(dataclasses.FrozenInstanceError):
        PyramidSpec().pool = "max"


@pytest.mark.parametrize("changes, field, config_key", [
    (dict(bins=(1, 0)), "bins", "model.bins"),
    (dict(bins=(2, 2)), "bins", "model.bins"),
    (dict(pool="median"), "pool", "model.pool"),
    (dict(pool="none", branch="raw", reduction=False), "pool", "model.pool"),
    (dict(branch="identity"), "branch", "model.ppm_branch"),
    (dict(branch="raw"), "branch", "model.ppm_branch"),
    (dict(norm="ln"), "norm", "model.ppm_norm"),
    (dict(branch="raw", reduction=False, norm="gn"), "norm", "model.ppm_norm"),
    (dict(context="other"), "context", "model.ppm_context"),
    (dict(pool="none", context="shuffled"), "context", "model.ppm_context"),
])
def test_each_rule_is_the_specs_and_the_config_names_its_own_key(changes, field, config_key):
    # one rule set (PyramidSpec.__post_init__): the model names the spec's field, the config its own key, and
    # both say the same thing
    with pytest.raises(ValueError) as spec_error:
        PyramidSpec(**changes)
    assert str(spec_error.value).startswith(f"{field}: ") and "\n" not in str(spec_error.value)
    keys = {"bins": "bins", "pool": "pool", "reduction": "reduction", "branch": "ppm_branch", "norm": "ppm_norm",
            "context": "ppm_context"}
    cfg = ModelConfig(**{keys[k]: v for k, v in changes.items()})
    with pytest.raises(ConfigError) as config_error:
        cfg.validate()
    assert str(config_error.value) == spec_error.value.render(PYRAMID_KEYS)
    assert str(config_error.value).startswith(f"{config_key}: ")


def test_the_config_builds_the_spec_the_model_takes():
    cfg = ModelConfig(bins=(1, 3), pool="max", reduction=False, ppm_branch="conv", ppm_norm="gn",
                      align_corners=False)
    assert cfg.pyramid == PyramidSpec(bins=(1, 3), pool="max", reduction=False, branch="conv", norm="gn",
                                      align_corners=False)
    assert ModelConfig(ppm=False).pyramid.bins == ()  # the FCN: no pyramid, its upsampling still set
    # raw branches without a pyramid take DR as they like: the rule is on the branches that are built
    ModelConfig(ppm=False, ppm_branch="raw").validate()


def test_raw_branches_are_a_separate_option_without_parameters():
    ppm = PyramidPooling(8, PyramidSpec(bins=(1, 2), reduction=False, branch="raw"))
    assert ppm.out_channels == 24 and sum(p.numel() for p in ppm.parameters()) == 0
    with pytest.raises(ValueError, match="reduction"):
        PyramidPooling(8, PyramidSpec(bins=(1, 2), reduction=True, branch="raw"))
    with pytest.raises(ValueError, match="branch"):
        PyramidPooling(8, PyramidSpec(bins=(1, 2), branch="identity"))


def test_max_vs_avg_on_a_hand_built_tensor():
    # one channel, 4x4: the top-left 2x2 quadrant holds 1, 2, 3, 10; the rest is 0
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1] = 1.0, 2.0, 3.0, 10.0
    avg = PyramidPooling(1, PyramidSpec(bins=(1, 2), pool="avg", reduction=False, branch="raw"))(x)
    mx = PyramidPooling(1, PyramidSpec(bins=(1, 2), pool="max", reduction=False, branch="raw"))(x)
    assert torch.allclose(avg[0, 1], torch.full((4, 4), 16 / 16))  # global mean = 16 / 16
    assert torch.allclose(mx[0, 1], torch.full((4, 4), 10.0))
    # bin 2 with align_corners: the corners of the upsampled map are the four cells exactly
    assert avg[0, 2, 0, 0] == pytest.approx(16 / 4) and mx[0, 2, 0, 0] == pytest.approx(10.0)
    assert avg[0, 2, 3, 3] == pytest.approx(0.0) and mx[0, 2, 3, 3] == pytest.approx(0.0)


def test_align_corners_switch_changes_upsampling():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    a = PyramidPooling(1, PyramidSpec(bins=(2,), reduction=False, align_corners=True, branch="raw"))(x)
    b = PyramidPooling(1, PyramidSpec(bins=(2,), reduction=False, align_corners=False, branch="raw"))(x)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("bins", [(), (0, 1)])
def test_bad_bins(bins):
    with pytest.raises(ValueError, match="bins"):
        PyramidPooling(8, PyramidSpec(bins=bins))


def test_bad_pool():
    with pytest.raises(ValueError, match="pool"):
        PyramidPooling(8, PyramidSpec(bins=(1,), pool="median"))


def _paper_ppm(x, ppm, bins, pool, raw):
    """The paper's module written out functionally with the weights of `ppm` (eval-mode BatchNorm)."""
    h, w = x.shape[-2:]
    outs = [x]
    for i, b in enumerate(bins):
        y = F.adaptive_avg_pool2d(x, b) if pool == "avg" else F.adaptive_max_pool2d(x, b)
        if not raw:
            conv, bn = ppm.branches[i][1], ppm.branches[i][2]
            y = F.conv2d(y, conv.weight)
            y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
            y = torch.relu(y * bn.weight[:, None, None] + bn.bias[:, None, None])
        outs.append(F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True))
    return torch.cat(outs, 1)


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("reduction, branch", [(True, "conv"), (False, "conv"), (False, "raw")])
def test_matches_a_functional_reference_with_the_same_weights(pool, reduction, branch):
    torch.manual_seed(1)
    bins = (1, 2, 3, 6)
    ppm = PyramidPooling(16, PyramidSpec(bins=bins, pool=pool, reduction=reduction, branch=branch)).eval()
    for m in ppm.modules():  # non-trivial BatchNorm statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    x = torch.randn(2, 16, 13, 17)
    with torch.no_grad():
        assert torch.allclose(ppm(x), _paper_ppm(x, ppm, bins, pool, branch == "raw"), atol=1e-5)


def test_the_capacity_matched_fcn_has_the_pyramids_parameters_and_no_context():
    import torch
    from conftest import tiny_model

    from study.models.build import build_model

    pyramid = build_model(tiny_model(bins=(1, 2, 3, 6), pool="avg", reduction=True), 4)
    matched = build_model(tiny_model(bins=(1, 2, 3, 6), pool="none", reduction=True), 4)
    fcn = build_model(tiny_model(ppm=False), 4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(matched) == count(pyramid) > count(fcn)
    ppm = matched.ppm.eval()
    x = torch.randn(1, ppm.out_channels // 2, 6, 6)
    y = ppm(x)
    assert y.shape == (1, ppm.out_channels, 6, 6)
    x2 = x.clone()
    x2[..., 0, 0] += 5.0  # a far-away change moves no other cell: no pooling, 1x1 convs only
    assert torch.equal(ppm(x2)[..., 3:, 3:], y[..., 3:, 3:])


def test_shuffled_context_pools_the_previous_image_and_keeps_the_pyramids_layers():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 6, 6)
    raw = dict(bins=(1,), pool="avg", reduction=False, branch="raw")
    own = PyramidPooling(8, PyramidSpec(**raw))(x)
    shuffled = PyramidPooling(8, PyramidSpec(**raw, context="shuffled"))(x)
    assert torch.equal(shuffled[:, :8], x)  # each image keeps its own map beside the branches
    # image i's global average is image i-1's (the first takes the last's): a hand-made roll of the own output
    assert torch.equal(shuffled[:, 8:], own[[2, 0, 1], 8:])
    alone = PyramidPooling(8, PyramidSpec(**raw, context="shuffled"))(x[:1])
    assert torch.equal(alone[:, 8:], torch.zeros(1, 8, 6, 6))  # nobody else's context to take: none at all
    conv = dict(bins=(1, 2, 3, 6), pool="max", reduction=True)
    a, b = PyramidPooling(8, PyramidSpec(**conv)), PyramidPooling(8, PyramidSpec(**conv, context="shuffled"))
    assert [t.shape for t in a.state_dict().values()] == [t.shape for t in b.state_dict().values()]
    assert ModelConfig(ppm_context="shuffled").pyramid.context == "shuffled"
