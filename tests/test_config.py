import dataclasses

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
        ("model.ppm_norm=ln", "model.ppm_norm"),
        ("train.warmup_steps=-1", "train.warmup_steps"),
        ("train.trained_loss_ratio=1.5", "train.trained_loss_ratio"),
        ("train.trained_sibling_ratio=0.9", "train.trained_sibling_ratio"),
        ("train.warmup_steps=900", "train.warmup_steps"),
        ("train.optimizer=adam", "train.optimizer: must be 'sgd' or 'adamw'"),
        ("train.loss_stride=0", "train.loss_stride: must be >= 1"),
        ("run.pack=1", "run.pack: unknown key"),  # packed training left the product: an old setting is refused
    ],
)
def test_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


def test_shuffled_context_is_scored_on_whole_images_only():
    # crops of one image in a batch would pass its own context among themselves
    with pytest.raises(ConfigError, match=r"^eval.mode: model.ppm_context=shuffled"):
        load_config(None, ["model.ppm_context=shuffled", "eval.mode=slide"])
    assert load_config(None, ["model.ppm_context=shuffled", "eval.mode=whole"]).model.ppm_context == "shuffled"


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


# Every field the config had when the first studies shipped. A field added since must be declared with
# `added(...)`: this list is closed, so a new plain field fails here instead of silently changing every hash.
FIRST_FIELDS = {
    "model": {"backbone", "out_indices", "output_stride", "layers", "channels", "stem_width", "stem_type",
              "pretrained", "pretrained_partial", "ppm", "bins", "pool", "reduction", "ppm_branch", "align_corners",
              "head_channels", "aux_channels", "dropout", "aux_weight"},
    "data": {"name", "root", "train_split", "val_split", "image_size", "train_size", "val_size", "data_seed",
             "probe_extras", "resize", "crop_size", "augment", "scale_range", "rotate_degrees", "ignore_index",
             "workers", "cache"},
    "train": {"steps", "batch_size", "lr", "head_lr_mult", "momentum", "weight_decay", "poly_power", "eval_every",
              "log_every", "checkpoint_every", "amp", "channels_last", "compile", "sync_bn"},
    "eval": {"mode", "crop_size", "scales", "flip", "base_size", "batch_size", "qualitative"},
    "bench": {"enabled", "batch_size", "image_size", "warmup", "iters", "repeats", "latency_iters"},
    "run": {"study", "variant", "seed", "out_dir", "device", "deterministic", "threads"},
}


def test_fields_added_since_the_first_studies_are_marked():
    import dataclasses

    from study.config import SECTIONS

    for name, cls in SECTIONS.items():
        plain = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("added")}
        assert plain == FIRST_FIELDS[name], f"{name}: declare new fields with added(...)"


def test_records_of_the_first_studies_keep_their_hash():
    """The hashes written by the first shipped table1 study (its seed-0 records, kept in tests/data) still come out
    of today's code, whatever fields were added since."""
    import json
    from pathlib import Path

    from study.config_files import from_dict

    records = json.loads((Path(__file__).parent / "data" / "first_records.json").read_text())
    assert len(records) == 7
    for rec in records:
        assert config_hash(from_dict(rec["config"])) == rec["config_hash"], rec["variant"]


def test_an_added_field_enters_the_hash_only_off_its_default():
    import dataclasses

    from study.config import added

    @dataclasses.dataclass(frozen=True)
    class Extra:
        old: int = 1
        new: float = added(0.0)

    base = {"old": 1}
    from study import config as config_module

    def hash_of(section):
        return config_module._section_for_hash("extra", section, Extra)

    assert hash_of(Extra()) == base
    assert hash_of(Extra(new=0.0)) == base
    assert hash_of(Extra(new=0.5)) == {"old": 1, "new": 0.5}


def test_normalisation_and_backbone_bn_fields():
    from study.config import DataConfig, ModelConfig

    assert DataConfig().mean == (0.485, 0.456, 0.406) and DataConfig().std == (0.229, 0.224, 0.225)
    assert ModelConfig().backbone_bn == "batch"
    cfg = load_config(None, ["data.mean=[0.5, 0.5, 0.5]", "data.std=[0.5, 0.5, 0.5]"])
    assert cfg.data.mean == (0.5, 0.5, 0.5) and config_hash(cfg) != config_hash(Config())
    with pytest.raises(ConfigError, match="data.std: must be 3 values > 0"):
        load_config(None, ["data.std=[0.5, 0, 0.5]"])
    with pytest.raises(ConfigError, match="data.mean: expected a list of 3 values"):
        load_config(None, ["data.mean=[0.5, 0.5]"])
    with pytest.raises(ConfigError, match="model.backbone_bn: must be 'batch' or 'frozen'"):
        load_config(None, ["model.backbone_bn=eval"])


def test_recipe_fields_keep_old_hashes_at_their_defaults():
    base = Config()
    assert base.model.ppm_norm == "bn" and base.train.warmup_steps == 0
    assert config_hash(base.replace(model=dataclasses.replace(base.model, ppm_norm="bn"))) == config_hash(base)
    assert config_hash(base.replace(model=dataclasses.replace(base.model, ppm_norm="none"))) != config_hash(base)
    assert config_hash(base.replace(train=dataclasses.replace(base.train, warmup_steps=40))) != config_hash(base)
    # the "trained" rule judges a run and changes nothing it computes: any value keeps the hash
    assert base.train.trained_loss_ratio == 0.45
    assert config_hash(base.replace(train=dataclasses.replace(base.train, trained_loss_ratio=0.0))) == config_hash(base)


# Every field declared with added(...), with the default it shipped with. A field added later leaves the hash of
# every finished cell alone only while its default reproduces the old behaviour: changing a default here without
# a new field name silently changes what finished cells mean, so this list changes only by adding lines, or by
# removing a field that never entered a hash (run.pack, unhashed, removed with packed training).
ADDED_DEFAULTS = {
    ("model", "backbone_bn"): "batch",
    ("model", "ppm_norm"): "bn",
    ("model", "ppm_context"): "own",
    ("model", "freeze_backbone"): False,
    ("data", "probe_kind"): "proportion",
    ("data", "mean"): (0.485, 0.456, 0.406),
    ("data", "std"): (0.229, 0.224, 0.225),
    ("data", "feature_flip"): False,
    ("data", "feature_crop"): None,
    ("data", "feature_cache_dir"): "",
    ("train", "force_settings"): False,
    ("train", "trained_loss_ratio"): 0.45,
    ("train", "trained_sibling_ratio"): 1.5,
    ("train", "warmup_steps"): 0,
    ("train", "optimizer"): "sgd",
    ("train", "loss_stride"): 1,
    ("bench", "peak_seconds"): 0.4,
    ("run", "twin"): 0,
}


def test_every_added_default_is_pinned():
    import dataclasses

    from study.config import SECTIONS

    found = {(name, f.name): f.default for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
             if f.metadata.get("added")}
    assert found == ADDED_DEFAULTS


def test_records_written_while_run_pack_existed_keep_their_hash():
    """run.pack (packed training, since removed) never entered a hash: a shipped record of each study whose config
    still carries it, the key dropped, gives the hash the record was written with."""
    import json
    from pathlib import Path

    from study.config_files import from_dict

    checked = 0
    for study in sorted((Path(__file__).parents[1] / "reports" / "_inputs").iterdir()):
        rec = next((r for r in (json.loads(p.read_text()) for p in sorted(study.glob("runs/*/record.json")))
                    if "pack" in r["config"]["run"]), None)
        if rec is None:
            continue
        rec["config"]["run"].pop("pack")
        assert config_hash(from_dict(rec["config"])) == rec["config_hash"], study.name
        checked += 1
    assert checked >= 1
