"""The one table of axes: typed values round-trip through the table cells, and a config key that is no axis
cannot pair two variants for a claim."""

import json

import pytest
from fabricate import TABLE1, fabricate  # noqa: I001

from study.config import SECTIONS, UNHASHED
from study.config_files import load_config
from study.results.axes import AXES, BINS, DEPTH, POOL, REDUCTION, axes_of, recipe_hash, recipe_of, typed_axes
from study.results.claims import CLAIMS, find_pairs
from study.results.table import build_table

CONFIGS = [*TABLE1.values(), {"model.layers": [2, 2, 1, 1]}, {"data.augment": []}, {"model.ppm_branch": "raw",
           "model.reduction": False}, {"model.backbone": "resnet50s", "data.crop_size": [64, 96]}]


def config(overrides: dict) -> dict:
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in overrides.items()]).to_dict()


@pytest.mark.parametrize("overrides", CONFIGS)
def test_each_cell_reads_back_as_the_typed_value(overrides):
    cfg = config(overrides)
    cells = axes_of(cfg)
    assert list(cells) == [a.column for a in AXES]
    assert typed_axes(cells) == {a: a.value(cfg) for a in AXES}


def test_typed_values_and_cells_by_hand():
    fcn, dr = config(TABLE1["FCN"]), config({**TABLE1["B1236-AVE-DR"], "model.layers": [2, 2, 1, 1]})
    assert (BINS.value(fcn), POOL.value(fcn), REDUCTION.value(fcn)) == ((), None, None)
    assert [axes_of(fcn)[k] for k in ("bins", "pool", "reduction", "depth")] == ["none", "-", "-", "default"]
    assert (BINS.value(dr), REDUCTION.value(dr), DEPTH.value(dr)) == ((1, 2, 3, 6), True, (2, 2, 1, 1))
    assert [axes_of(dr)[k] for k in ("bins", "reduction", "depth")] == ["1,2,3,6", "DR", "2,2,1,1"]


def test_every_hashed_key_is_an_axis_or_in_the_recipe():
    cfg = config({})
    recipe = set(recipe_of(cfg))
    on_axes = {k for a in AXES for k in a.keys}
    hashed = {f"{s}.{name}" for s, cls in SECTIONS.items() for name, f in cls.__dataclass_fields__.items()
              if (s, name) not in UNHASHED and not f.metadata.get("added")}  # added fields: only off their default
    assert hashed - {"run.seed"} == recipe | (on_axes & hashed) and not recipe & on_axes
    assert "model.backbone_bn" in recipe_of(config({"model.backbone_bn": "frozen"}))
    off_default = config({"model.ppm_norm": "none", "train.warmup_steps": 5})
    assert {"model.ppm_norm", "train.warmup_steps"} <= set(recipe_of(off_default))
    assert recipe_hash(off_default) != recipe_hash(cfg)
    assert recipe_hash(cfg) == recipe_hash(config({"model.pool": "max", "run.seed": 3, "data.root": "x"}))
    assert recipe_hash(cfg) != recipe_hash(config({"train.weight_decay": 0.001}))


@pytest.mark.parametrize("key, value", [("train.weight_decay", 0.001), ("model.head_channels", 32)])
def test_variants_that_differ_in_a_key_no_axis_reads_are_never_paired(tmp_path, key, value):
    """B1-AVE vs B1-MAX isolates pooling; the same pair with a different recipe key isolates nothing."""
    variants = {"B1-MAX": TABLE1["B1-MAX"], "B1-AVE": TABLE1["B1-AVE"], "B1-AVE-X": {**TABLE1["B1-AVE"], key: value}}
    df = build_table(fabricate(tmp_path, {v: [0.5] for v in variants}, variants=variants))
    ave_beats_max = next(c for c in CLAIMS if c.name == "AVE beats MAX")
    assert df["pool"].tolist() == ["max", "avg", "avg"] and df["recipe"].nunique() == 2
    assert find_pairs(df, ave_beats_max) == [("B1-AVE", "B1-MAX")]


def test_docs_show_the_axes_table():
    from pathlib import Path

    from study.results.axes import docs_table

    assert docs_table() in (Path(__file__).resolve().parents[1] / "docs" / "configs.md").read_text()


def test_a_new_axis_reaches_the_table_the_claims_and_the_report_with_no_other_edit(tmp_path, monkeypatch):
    """A fabricated pyramid-only axis, added in its own module: before it, variants that differ in model.ppm_norm
    have different recipes and are never paired; with it, the table has its column, "PPM beats the FCN" pairs the
    GroupNorm pyramid too, and the report's variants table shows it."""
    import types

    from fabricate import fabricate

    from study.report.__main__ import main as report_main
    from study.results import axes
    from study.results.claims import judge_claims
    from study.results.table import build_table

    variants = {"FCN": {"model.ppm": False}, "B1-AVE": {"model.bins": [1], "model.pool": "avg"},
                "B1-AVE-GN": {"model.bins": [1], "model.pool": "avg", "model.ppm_norm": "gn"}}
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.51, 0.52], "B1-AVE": [0.6, 0.61, 0.62],
                                             "B1-AVE-GN": [0.58, 0.6, 0.6]}, variants=variants)
    before = {(r.better, r.worse) for r in judge_claims(build_table(study))}
    assert before == {("B1-AVE", "FCN")}
    extra = types.ModuleType("extra_axis")
    extra.NORM = axes.pyramid_axis("ppm_norm", "model.ppm_norm", lambda m: str(m.get("ppm_norm", "bn")),
                                   "the pyramid branches' norm: bn, none or gn")
    monkeypatch.setattr(axes, "AXES", (*axes.AXES, extra.NORM))
    df = build_table(study)
    assert df["ppm_norm"].tolist() == ["-"] * 3 + ["bn"] * 3 + ["gn"] * 3
    after = {(r.better, r.worse) for r in judge_claims(df)}
    assert after == {("B1-AVE", "FCN"), ("B1-AVE-GN", "FCN")}
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "table1" / "index.md").read_text()
    assert "| ppm_norm " in md and "| gn " in md
