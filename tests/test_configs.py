"""Every shipped config and study file loads and validates (paths are relative to the repository)."""

from pathlib import Path

import pytest

from study.config_files import load_config
from study.search.space import grid_cells, load_study

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_run_configs_load(path):
    cfg = load_config(path)
    assert cfg.train.steps >= 1


@pytest.mark.parametrize("path", sorted((CONFIGS / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_study_files_load(path):
    spec = load_study(path)
    assert spec.name == path.stem
    if spec.search is None:
        assert len(grid_cells(spec)) == len(spec.variants) * len(spec.seeds)
    else:
        assert spec.search.n_trials >= 1


def test_default_study_is_the_papers_table1_on_the_probe():
    spec = load_study(CONFIGS / "studies" / "table1.yaml")
    assert list(spec.variants) == ["FCN", "B1-MAX", "B1-AVE", "B1236-MAX", "B1236-AVE", "B1236-MAX-DR",
                                   "B1236-AVE-DR", "FCN-CAP-DR"]
    cap, pyramid = spec.variants["FCN-CAP-DR"], spec.variants["B1236-AVE-DR"]
    assert cap == {**pyramid, "model.pool": "none"}  # matched to the pyramid's capacity, without its pooling
    assert spec.seeds == tuple(range(10)) and spec.paper_table == "table1" and spec.baseline == "FCN"
    assert load_config(spec.base_config).data.name == "probe"


def test_camvid_finetune_recipe():
    """Pretrained backbone at its own normalisation, head lr x10, frozen backbone BN, the paper's augmentation."""
    cfg = load_config(CONFIGS / "camvid_finetune.yaml")
    assert cfg.model.pretrained == "package:efficientnet-lite0" and cfg.model.backbone == "tf_efficientnet_lite0"
    assert cfg.data.mean == cfg.data.std == (0.5, 0.5, 0.5)
    assert cfg.train.head_lr_mult == 10.0 and cfg.model.backbone_bn == "frozen"
    assert set(cfg.data.augment) == {"scale", "rotate", "blur", "flip"} and cfg.data.scale_range == (0.5, 2.0)
    assert cfg.model.layers is None and cfg.model.stem_type is None
    spec = load_study(CONFIGS / "studies" / "table1_camvid_finetune.yaml")
    assert len(spec.variants) == 7 and len(spec.seeds) >= 3


def test_configs_do_not_point_at_a_machine_specific_data_copy():
    for path in CONFIGS.glob("*.yaml"):
        assert "shared" not in load_config(path).data.root, path


def test_docs_list_every_config_field():
    import dataclasses

    from study.config import SECTIONS

    text = (CONFIGS.parent / "docs" / "configs.md").read_text()
    missing = [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
               if f"| `{name}.{f.name}` |" not in text]
    assert missing == []
