"""The paper-recipe configs evaluate with the official procedure; the new eval/model fields validate."""

from pathlib import Path

import pytest

from study.config import ConfigError, EvalConfig, ModelConfig
from study.config_files import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name, base, crop", [("ade20k", 512, 473), ("voc", 512, 473), ("cityscapes", 2048, 713)])
def test_paper_configs_use_the_official_procedure(name, base, crop):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.eval.mode == "official" and cfg.eval.base_size == base and cfg.eval.crop_size == (crop, crop)
    assert cfg.eval.scales == (1.0,) and cfg.eval.flip
    assert not cfg.model.pretrained_partial
    assert "ImageNet-pretrained" in (CONFIGS / f"{name}.yaml").read_text()


def test_new_fields_validate():
    EvalConfig(mode="official", base_size=2048).validate()
    with pytest.raises(ConfigError, match="eval.base_size"):
        EvalConfig(base_size=0).validate()
    with pytest.raises(ConfigError, match="eval.mode"):
        EvalConfig(mode="tiles").validate()
    assert ModelConfig().pretrained_partial is False
