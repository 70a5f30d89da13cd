"""Frozen features: the cache's keys, refusals, atomic and resumable build, and head-only runs that save the whole
network (evaluated on images, it scores what the run recorded)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from study.atomic import disk_error
from study.config import ConfigError
from study.config_files import load_config
from study.data import fingerprint
from study.data.build import build_dataset
from study.features import cache as fc
from study.features.dataset import FeatureDataset
from study.models.backbone import build_backbone

H, W = 32, 48  # images; stride 8 gives 4 x 6 cells


def write_folder(root, n_train=6, n_val=3, seed=0):
    rng = np.random.default_rng(seed)
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("a\nb\nc\n")
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}.png")
            labels = rng.integers(0, 3, (H, W), dtype=np.uint8)
            labels[0, 0] = 255
            Image.fromarray(labels, "L").save(root / split / "masks" / f"{i}.png")
    return root


FROZEN = ["model.freeze_backbone=true", "model.backbone_bn=frozen", "model.out_indices=[3, 4]",
          "model.output_stride=8", "model.aux_weight=0.4", "data.name=folder", "data.augment=[]",
          "data.feature_flip=true", "data.feature_crop=[2, 3]", "eval.mode=whole", "eval.qualitative=0",
          "train.batch_size=2", "bench.enabled=false"]


@pytest.fixture
def frozen_cfg(tmp_path):
    root = write_folder(tmp_path / "data")

    def make(*overrides):
        return load_config(None, [*TINY, *FROZEN, f"data.root={root}", f"run.out_dir={tmp_path / 'results'}",
                                  *overrides])

    return make


def test_the_maps_are_the_frozen_backbones_and_built_once(frozen_cfg):
    cfg = frozen_cfg()
    logs = []
    folder, built = fc.ensure_cache(cfg, "train", log=logs.append)
    assert built > 0 and fc.valid(folder, folder.name)
    again, seconds = fc.ensure_cache(cfg, "train", log=logs.append)
    assert again == folder and seconds == 0.0
    arrays, manifest = fc.open_split(folder)
    assert arrays.features.shape == (6, 2, 32 + 64, H // 8, W // 8) and arrays.features.dtype == np.float16
    assert arrays.labels.shape == (6, H, W) and manifest["copies"] == ["identity", "hflip"]
    torch.manual_seed(123)  # the backbone's weights come from the config, not from the global seed
    backbone = build_backbone(cfg.model).eval()
    image, label = build_dataset(cfg.data, "train", train=False)[4]
    with torch.no_grad():
        plain = torch.cat(backbone(image[None]), 1)[0]
        mirrored = torch.cat(backbone(image[None].flip(-1)), 1)[0]
    torch.testing.assert_close(torch.from_numpy(arrays.features[4, 0].astype(np.float32)), plain, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(torch.from_numpy(arrays.features[4, 1].astype(np.float32)), mirrored, atol=2e-3,
                               rtol=2e-3)
    assert (arrays.labels[4] == label.numpy()).all()


def test_the_key_follows_what_determines_the_maps_and_nothing_else(frozen_cfg, tmp_path):
    key = fc.cache_key(frozen_cfg(), "train")[0]
    assert fc.cache_key(frozen_cfg("model.bins=[1]", "model.pool=max", "run.seed=3", "data.feature_crop=[1, 1]",
                                   "model.head_channels=4", "train.lr=0.5"), "train")[0] == key  # variants share it
    assert fc.cache_key(frozen_cfg("data.resize=[16, 24]"), "train")[0] != key
    assert fc.cache_key(frozen_cfg("data.mean=[0.5, 0.5, 0.5]"), "train")[0] != key
    assert fc.cache_key(frozen_cfg("data.feature_flip=false"), "train")[0] != key
    assert fc.cache_key(frozen_cfg("model.output_stride=16"), "train")[0] != key
    assert fc.cache_key(frozen_cfg(), "val")[0] != key
    fingerprint._memo.clear()
    image = tmp_path / "data" / "train" / "images" / "0.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(image)  # same name, other content
    assert fc.cache_key(frozen_cfg(), "train")[0] != key


def test_a_torn_or_foreign_cache_is_rebuilt_never_read(frozen_cfg):
    cfg = frozen_cfg()
    folder, _ = fc.ensure_cache(cfg, "val")
    reference = np.array(fc.open_split(folder)[0].features)
    with open(folder / "features.npy", "r+b") as f:  # torn: a file shorter than its manifest says
        f.truncate(100)
    assert not fc.valid(folder, folder.name)
    logs = []
    again, built = fc.ensure_cache(cfg, "val", log=logs.append)
    assert built > 0 and any("rebuilding" in line for line in logs)
    assert (np.array(fc.open_split(again)[0].features) == reference).all()
    manifest = json.loads((folder / fc.MANIFEST).read_text())
    (folder / fc.MANIFEST).write_text(json.dumps({**manifest, "key": "0" * 24}))  # another key's manifest
    assert not fc.valid(folder, folder.name)
    (folder / fc.MANIFEST).unlink()  # no manifest: a build that never finished
    assert not fc.valid(folder, folder.name)
    assert fc.ensure_cache(cfg, "val")[1] > 0


def test_a_killed_build_resumes_where_it_stopped(frozen_cfg, monkeypatch):
    cfg = frozen_cfg()
    monkeypatch.setattr(fc, "CHUNK", 2)
    calls = {"n": 0}
    real = fc.atomic_write_text

    def die_after_first_chunk(path, text):
        if path.name == "progress.json" and calls["n"] == 1:
            raise KeyboardInterrupt  # killed between chunks
        calls["n"] += path.name == "progress.json"
        return real(path, text)

    monkeypatch.setattr(fc, "atomic_write_text", die_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        fc.ensure_cache(cfg, "train")
    key = fc.cache_key(cfg, "train")[0]
    root = fc.cache_root(cfg)
    assert not (root / key).exists() and json.loads((root / f"{key}.partial" / "progress.json").read_text())["done"] == 2
    monkeypatch.setattr(fc, "atomic_write_text", real)
    logs = []
    folder, _ = fc.ensure_cache(cfg, "train", log=logs.append)
    assert any("resuming split train at image 2/6" in line for line in logs)
    resumed = np.array(fc.open_split(folder)[0].features)
    fresh = frozen_cfg(f"data.feature_cache_dir={root.parent / 'fresh'}")
    clean = np.array(fc.open_split(fc.ensure_cache(fresh, "train")[0])[0].features)
    assert (resumed == clean).all()


def test_labels_of_several_sizes_are_stored_each_at_its_own_and_a_killed_build_resumes(frozen_cfg, tmp_path,
                                                                                        monkeypatch):
    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(40, 40), (24, 56), (32, 48)]):  # val photographs of three shapes
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"data/val/images/{i}.png")
        Image.fromarray(rng.integers(0, 3, (h, w), dtype=np.uint8), "L").save(tmp_path / f"data/val/masks/{i}.png")
    cfg = frozen_cfg("data.resize=[32, 48]")
    monkeypatch.setattr(fc, "CHUNK", 1)
    real, calls = fc.atomic_write_text, {"n": 0}

    def die_after_two_chunks(path, text):
        if path.name == "progress.json" and calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += path.name == "progress.json"
        return real(path, text)

    monkeypatch.setattr(fc, "atomic_write_text", die_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        fc.ensure_cache(cfg, "val")
    monkeypatch.setattr(fc, "atomic_write_text", real)
    logs = []
    folder, _ = fc.ensure_cache(cfg, "val", log=logs.append)
    assert any("resuming split val at image 2/3" in line for line in logs)
    arrays, manifest = fc.open_split(folder)
    assert manifest["label_sizes"] == [[40, 40], [24, 56], [32, 48]]
    assert arrays.labels.shape == (40 * 40 + 24 * 56 + 32 * 48,) and arrays.features.shape[-2:] == (4, 6)
    images = build_dataset(cfg.data, "val", train=False)
    stored = FeatureDataset(folder, cfg, "val", train=False)
    for i in range(3):
        assert stored[i][1].equal(images[i][1])  # each label at its own size, as the images path scores it
    train_arrays = fc.open_split(fc.ensure_cache(cfg, "train")[0])[0]
    assert train_arrays.label_sizes is None and train_arrays.labels.shape == (6, 32, 48)  # one size: as before


def test_a_full_disk_is_an_error_and_nothing_half_built_is_used(frozen_cfg, monkeypatch):
    cfg = frozen_cfg()
    monkeypatch.setenv("STUDY_INJECT_WRITE_ERROR", "ENOSPC:manifest")
    with pytest.raises(OSError) as e:
        fc.ensure_cache(cfg, "val")
    assert disk_error(e.value)
    key = fc.cache_key(cfg, "val")[0]
    assert not (fc.cache_root(cfg) / key).exists()


def test_frozen_settings_are_checked_with_one_line_errors(frozen_cfg):
    with pytest.raises(ConfigError, match="data.augment"):
        frozen_cfg("data.augment=[flip]")
    with pytest.raises(ConfigError, match="model.backbone_bn"):
        frozen_cfg("model.backbone_bn=batch")
    with pytest.raises(ConfigError, match="data.feature_flip"):
        frozen_cfg("model.freeze_backbone=false", "model.backbone_bn=batch")
    with pytest.raises(ConfigError, match="eval.mode"):
        frozen_cfg("eval.mode=slide")
    # with data.resize, the map size is known before any map is stored: refused with the config
    with pytest.raises(ConfigError, match=r"data.resize: .*divisible by model.output_stride 8 \(got 30x44\)"):
        frozen_cfg("data.resize=[30, 44]")
    with pytest.raises(ConfigError, match=r"data.feature_crop: .*at most \[4, 6\]"):
        frozen_cfg("data.resize=[32, 48]", "data.feature_crop=[5, 5]")
    folder, _ = fc.ensure_cache(frozen_cfg(), "train")
    with pytest.raises(fc.CacheError, match="data.feature_crop"):
        FeatureDataset(folder, frozen_cfg("data.feature_crop=[5, 5]"), "train", train=True)


def test_feature_samples_are_a_function_of_their_seed_and_mirror_the_labels(frozen_cfg):
    cfg = frozen_cfg("data.feature_crop=null")
    folder, _ = fc.ensure_cache(cfg, "train")
    ds = FeatureDataset(folder, cfg, "train", train=True)
    arrays, _ = fc.open_split(folder)
    seen = set()
    for seed in range(40):
        x, y = ds[(1, seed)]
        assert ds[(1, seed)][0].equal(x)
        copy = 1 if torch.equal(x, torch.from_numpy(arrays.features[1, 1].astype(np.float32))) else 0
        assert y.equal(torch.from_numpy(arrays.labels[1][:, ::-1].astype(np.int64).copy()) if copy else
                       torch.from_numpy(arrays.labels[1].astype(np.int64)))
        seen.add(copy)
    assert seen == {0, 1}
    crop = FeatureDataset(folder, frozen_cfg(), "train", train=True)
    x, y = crop[(2, 7)]
    assert x.shape == (96, 2, 3) and y.shape == (16, 24)


@pytest.mark.slow  # trains a tiny head, saves, evaluates the saved whole network on images
def test_a_frozen_run_saves_the_whole_network_and_evaluating_it_on_images_gives_its_score(frozen_cfg, tmp_path):
    from study.run import evaluate_model_file, load_model, run_one

    cfg = frozen_cfg("train.steps=8")
    record = run_one(cfg)
    assert record.status == "completed", record.error
    assert record.provenance["weights"].startswith("frozen random-initialised features")
    assert record.provenance["feature_cache"]["copies"] == ["identity", "hflip"]
    folder = tmp_path / "results" / "adhoc" / "runs" / "default__s0"
    saved = load_model(folder / "model.pt")["model"]
    initial = build_backbone(cfg.model).state_dict()
    assert all(torch.equal(saved[f"backbone.{k}"], v) for k, v in initial.items())  # never trained
    assert any(k.startswith("head.") for k in saved) and any(k.startswith("aux_head.") for k in saved)
    result, _ = evaluate_model_file(folder / "model.pt")  # on the val images, through the backbone
    assert abs(result["miou"] - record.metrics["miou"]) < 1e-3
    assert result["pixel_acc"] == pytest.approx(record.metrics["pixel_acc"], abs=1e-3)
    slide, _ = evaluate_model_file(folder / "model.pt", overrides=["eval.mode=slide", "eval.crop_size=[16, 24]"])
    assert slide["eval_mode"] == "slide" and 0 <= slide["miou"] <= 1  # any mode once the network runs on images
    old = load_model(folder / "model.pt")  # a model.pt written while packed training existed: its config has run.pack
    old["config"]["run"]["pack"] = 0
    torch.save(old, tmp_path / "old.pt")
    again, _ = evaluate_model_file(tmp_path / "old.pt", out=tmp_path / "old.json")
    assert again["miou"] == pytest.approx(result["miou"], abs=1e-6)


@pytest.mark.slow  # a fresh interpreter runs the CLI
def test_a_full_disk_while_caching_is_one_line_from_the_cli(tmp_path):
    import os

    from conftest import write_tiny_yaml

    root = write_folder(tmp_path / "data")
    config = write_tiny_yaml(tmp_path / "frozen.yaml", (*FROZEN, f"data.root={root}",
                                                         f"run.out_dir={tmp_path / 'results'}"))
    env = {**os.environ, "STUDY_INJECT_WRITE_ERROR": "ENOSPC:manifest"}
    run = subprocess.run([sys.executable, "-m", "study", "run", str(config)], capture_output=True, text=True, env=env)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "cannot write" in lines[0]
    assert not any(p.is_dir() and len(p.name) == 24 for p in (tmp_path / "results" / "_features").iterdir())


def test_the_run_that_builds_the_cache_trains_as_a_run_that_finds_it(frozen_cfg, tmp_path):
    """Building the cache draws random numbers (the backbone is built to extract); the run that builds it must still
    start from its seed's initialisation, so retraining a cell later, with the cache there, gives the same record."""
    from study.run import run_one

    weights = tmp_path / "backbone.pth"
    torch.save(build_backbone(frozen_cfg().model).state_dict(), weights)  # "pretrained" weights: a file, as a user's
    extra = ("train.steps=4", f"model.pretrained={weights}", "model.pretrained_partial=true")
    root = fc.cache_root(frozen_cfg(*extra))
    assert not root.exists() or not any(root.iterdir())
    builder = run_one(frozen_cfg(*extra, "run.study=builder"))  # builds the train and val caches
    built = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(built) == 2
    finder = run_one(frozen_cfg(*extra, "run.study=finder"))  # finds them
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == built
    assert finder.provenance["feature_cache"]["built_here_seconds"] == 0
    assert [c["loss"] for c in finder.curves if "loss" in c] == [c["loss"] for c in builder.curves if "loss" in c]
    assert finder.metrics["miou"] == builder.metrics["miou"]
