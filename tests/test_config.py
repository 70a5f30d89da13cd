import pytest

from study.config import Config, ConfigError, config_hash
from study.config_files import load_config


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_paper_recipe():
    cfg = Config()
    assert cfg.model.bins == (1, 2, 3, 6) and cfg.model.pool == "avg" and cfg.model.reduction
    assert cfg.model.aux_weight == 0.4 and cfg.model.output_stride == 8
    assert cfg.train.momentum == 0.9 and cfg.train.weight_decay == 1e-4 and cfg.train.head_lr_mult == 10
    assert cfg.train.poly_power == 0.9 and cfg.data.ignore_index == 255


def test_base_chain_then_file_then_cli(tmp_path):
    write(tmp_path, "base.yaml", "model: {pool: max, bins: [1]}\ntrain: {lr: 0.05}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nmodel: {bins: [1, 2]}\n")
    cfg = load_config(child, ["train.lr=0.1", "model.reduction=false"])
    assert cfg.model.pool == "max"  # from base
    assert cfg.model.bins == (1, 2)  # file overrides base
    assert cfg.train.lr == 0.1 and cfg.model.reduction is False  # CLI overrides file
    assert isinstance(cfg.model.bins, tuple)


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.foo=1", "model.foo"),
        ("nosuch.key=1", "nosuch"),
        ("model.bins=[0, 1]", "model.bins"),
        ("model.bins=3", "model.bins"),
        ("train.lr=-0.01", "train.lr"),
        ("train.steps=abc", "train.steps"),
        ("train.steps=1.5", "train.steps"),
        ("data.crop_size=[]", "data.crop_size"),
        ("data.crop_size=[0, 64]", "data.crop_size"),
        ("model.pool=mean", "model.pool"),
        ("model.reduction=1", "model.reduction"),
        ("data.augment=[flip, jitter]", "data.augment"),
        ("eval.mode=tiles", "eval.mode"),
        ("model.aux_weight=-1", "model.aux_weight"),
    ],
)
def test_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = write(tmp_path, "bad.yaml", "model: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    loop = write(tmp_path, "loop.yaml", "base: loop.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(loop)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["model.bins"])


def test_hash_is_stable_and_ignores_placement():
    a = load_config(None, ["model.bins=[1,2,3,6]"])
    b = load_config(None, ["run.out_dir=elsewhere", "run.variant=x", "data.workers=2"])
    assert config_hash(a) == config_hash(b) == config_hash(Config())
    assert config_hash(load_config(None, ["model.pool=max"])) != config_hash(a)
    assert config_hash(load_config(None, ["run.seed=1"])) != config_hash(a)
    assert len(config_hash(a)) == 12
