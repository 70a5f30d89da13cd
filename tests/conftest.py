"""The test fixtures' configs, in one place: a tiny probe config that trains in a few seconds on a CPU (as dotted
overrides, a YAML file or a ModelConfig) and the stand-in base config of studies whose runs are faked."""

import dataclasses
import os
from pathlib import Path

import pytest

from study.config import ModelConfig
from study.config_files import load_config

TINY = [
    "model.backbone=resnet18", "model.out_indices=[1, 2]", "model.layers=[1, 1, 1, 1]",
    "model.channels=[8, 16, 32, 64]", "model.stem_width=8", "model.stem_type=deep", "model.head_channels=8",
    "model.aux_channels=8", "model.aux_weight=0.0",
    "data.name=probe", "data.image_size=[32, 32]", "data.crop_size=[32, 32]", "data.train_size=16",
    "data.val_size=4", "data.augment=[flip]",
    "train.steps=6", "train.batch_size=4", "train.lr=0.01", "train.log_every=2", "train.checkpoint_every=0",
    "eval.batch_size=4", "eval.crop_size=[24, 24]", "eval.qualitative=2",
    "bench.batch_size=2", "bench.image_size=[32, 32]", "bench.warmup=1", "bench.iters=1", "bench.repeats=2",
    "bench.latency_iters=2", "run.threads=1",
]
# base_config of a study file whose runs are stand-ins (no training, no benchmark)
STAND_IN_BASE = "train: {steps: 3}\nbench: {enabled: false}  # stand-in runs: no benchmark\n"


def tiny_model(**changes) -> ModelConfig:
    """The tiny network of TINY as a ModelConfig, with `changes` applied (model tests build it directly)."""
    return dataclasses.replace(load_config(None, TINY).model, **changes)


def write_tiny_yaml(path, extra: tuple[str, ...] = ()):
    """The tiny config (plus dotted overrides) as a YAML run config file."""
    sections: dict[str, list[str]] = {}
    for item in [*TINY, *extra]:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"  {name}: {value}")
    path.write_text("".join(f"{s}:\n" + "\n".join(lines) + "\n" for s, lines in sections.items()))
    return path


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str):
        return load_config(None, [*TINY, f"run.out_dir={tmp_path / 'results'}", *overrides])

    return make


REPO = Path(__file__).resolve().parents[1]


def find_camvid() -> Path | None:
    """CamVid in the SegNet layout, for the tests that read the real data: $STUDY_CAMVID_ROOT, else the repository's
    data/camvid (where the README puts it), else the copy next to the repository, ../shared/data/camvid."""
    env = os.environ.get("STUDY_CAMVID_ROOT")
    candidates = [Path(env)] if env else [REPO / "data" / "camvid", REPO.parent / "shared" / "data" / "camvid"]
    return next((p for p in candidates if p.is_dir()), None)


@pytest.fixture
def camvid_root() -> Path:
    root = find_camvid()
    if root is None:
        pytest.skip("CamVid not found: set STUDY_CAMVID_ROOT or put it in data/camvid (README: CamVid)")
    return root


# Skips for want of an integration dependency that CI provides (PostgreSQL, Chromium): locally a skip with its
# reason; under STUDY_REQUIRE_INTEGRATION=1 (.ci/run) a failure, so CI cannot go green by skipping them.
INTEGRATION = ("postgresql", "postgres_url", "chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("STUDY_REQUIRE_INTEGRATION") == "1":
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
        if any(word in reason.lower() for word in INTEGRATION):
            report.outcome = "failed"
            report.longrepr = f"required integration dependency missing (STUDY_REQUIRE_INTEGRATION=1): {reason}"
