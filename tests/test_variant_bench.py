"""Per-variant throughput: cells skip the benchmark, each completed variant is timed once after the sweep."""

import json

import pytest
from conftest import write_tiny_yaml  # noqa: I001

from study.config import ConfigError
from study.record import RunRecord, run_dir, write_record
from study.search.space import cell_config, load_study, variant_bench_config
from study.search.variants import bench_variants


@pytest.fixture
def study_file(tmp_path):
    write_tiny_yaml(tmp_path / "tiny.yaml")
    path = tmp_path / "study.yaml"
    path.write_text("name: vb\nbase_config: tiny.yaml\nseeds: [0, 1]\nvariants:\n"
                    "  FCN: {model.ppm: false}\n  B1: {model.bins: [1]}\n")
    return path


def test_cells_skip_the_benchmark_and_the_variant_config_keeps_it(study_file, tmp_path):
    spec = load_study(study_file)
    assert spec.throughput == "per_variant"
    assert not cell_config(spec, "B1", 1).bench.enabled
    cfg = variant_bench_config(spec, "B1", str(tmp_path))
    assert cfg.bench.enabled and cfg.run.seed == 0 and cfg.run.threads == 0 and cfg.model.bins == (1,)
    per_run = study_file.read_text() + "throughput: per_run\n"
    study_file.write_text(per_run)
    assert cell_config(load_study(study_file), "B1", 1).bench.enabled


def test_bad_throughput_value_names_the_key(study_file):
    study_file.write_text(study_file.read_text() + "throughput: sometimes\n")
    with pytest.raises(ConfigError, match="throughput: must be per_variant or per_run"):
        load_study(study_file)


@pytest.mark.slow  # one benchmark subprocess
def test_completed_variants_are_timed_once(study_file, tmp_path):
    spec = load_study(study_file)
    out = str(tmp_path / "results")
    cfg = cell_config(spec, "B1", 0, None, out)
    write_record(RunRecord(id="B1__s0", study="vb", variant="B1", seed=0, config=cfg.to_dict(), config_hash="x",
                           status="completed"), run_dir(out, "vb", "B1", 0))
    lines = []
    assert bench_variants(spec, out, (), log=lines.append) == []
    bench = tmp_path / "results" / "vb" / "bench"
    assert sorted(p.name for p in bench.iterdir()) == ["B1.json", "B1.yaml"]  # FCN never completed
    saved = json.loads((bench / "B1.json").read_text())
    assert saved["variant"] == "B1" and saved["throughput"]["train_img_s"] > 0 and len(lines) == 1
    assert bench_variants(spec, out, (), log=lines.append) == [] and len(lines) == 1  # current: not timed again


def test_a_resumed_study_takes_the_shipped_timings_whose_config_is_current(study_file, tmp_path):
    from study.config import config_hash
    from study.search.variants import take_bench

    spec = load_study(study_file)
    out = str(tmp_path / "results")
    shipped = tmp_path / "shipped" / "bench"
    shipped.mkdir(parents=True)
    current = config_hash(variant_bench_config(spec, "B1", out))
    (shipped / "B1.json").write_text(json.dumps({"config_hash": current, "throughput": {"train_img_s": 7.0}}))
    (shipped / "FCN.json").write_text(json.dumps({"config_hash": "another config", "throughput": {}}))
    assert take_bench(spec, tmp_path / "shipped", out, ()) == ["B1"]
    assert json.loads((tmp_path / "results" / "vb" / "bench" / "B1.json").read_text())["throughput"] == \
        {"train_img_s": 7.0}
    assert not (tmp_path / "results" / "vb" / "bench" / "FCN.json").exists()  # timed again after the sweep
