import json
from pathlib import Path

import pytest

from study.manifest import ManifestError, StudyManifest, read_manifest, write_manifest

RUNNER_KEYS = ["name", "description", "study_file", "base_config", "command", "kind", "baseline", "paper_table",
               "seeds", "objective", "overrides", "variants", "variant_order", "space", "n_trials", "throughput",
               "seeds_on_demand"]


def test_round_trip_keeps_the_runners_json_layout(tmp_path):
    m = StudyManifest(name="table1", description="d", seeds=(0, 1, 2), variants={"FCN": {"model.ppm": False}},
                      variant_order=("FCN",), paper_table="table1", baseline="FCN", n_trials=None)
    path = write_manifest(tmp_path, m)
    data = json.loads(path.read_text())
    assert list(data) == sorted(RUNNER_KEYS)  # the keys study/search/space.py writes, sorted as the runner does
    assert data["seeds"] == [0, 1, 2] and data["objective"] == {"metric": "miou", "direction": "maximize"}
    assert read_manifest(tmp_path) == m
    assert StudyManifest.from_dict(m.to_dict()) == m
    assert m.order == ["FCN"] and [p.name for p in tmp_path.iterdir()] == ["study.json"]


def test_absent_is_none_and_unknown_keys_are_ignored(tmp_path):
    assert read_manifest(tmp_path) is None
    m = StudyManifest.from_dict({"name": "x", "future_field": 1, "variants": {"a": {}, "b": {}}})
    assert m.order == ["a", "b"] and m.kind == "grid"


@pytest.mark.parametrize("data, field", [
    ({"description": "no name"}, "'name'"),
    ({"name": "x", "seeds": [0, "1"]}, "'seeds'"),
    ({"name": "x", "kind": "random"}, "'kind'"),
    ({"name": "x", "objective": {"metric": "miou", "direction": "up"}}, "'objective'"),
    ({"name": "x", "variant_order": "FCN"}, "'variant_order'"),
    ({"name": "x", "overrides": ["a=1"]}, "'overrides'"),
    ({"name": "x", "n_trials": 2.5}, "'n_trials'"),
    ({"name": "x", "baseline": 3}, "'baseline'"),
    ({"name": "x", "seeds_on_demand": [5, 5, 20]}, "'seeds_on_demand'"),
    ({"name": "x", "equivalence_margin": -1}, "'equivalence_margin'"),
    ({"name": "x", "aa": ["AA", "B"]}, "'aa'"),
])
def test_bad_fields_are_named_in_one_line(data, field):
    with pytest.raises(ManifestError, match=field) as info:
        StudyManifest.from_dict(data)
    assert "\n" not in str(info.value)


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "study.json").write_text("{oops")
    with pytest.raises(ManifestError, match=r"study\.json: unreadable study manifest"):
        read_manifest(tmp_path)
    (tmp_path / "study.json").write_text('{"name": 3}')
    with pytest.raises(ManifestError, match=r"study\.json: field 'name'"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("study_file", sorted((Path(__file__).parents[1] / "configs" / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_reads_what_the_runner_writes(study_file, tmp_path):
    from study.search.space import load_study, study_manifest

    data = json.loads(json.dumps(study_manifest(load_study(study_file), "python -m study sweep x", Path.cwd()).to_dict()))
    m = StudyManifest.from_dict(data)
    extra = [k for k in ("equivalence_margin", "controls", "aa", "confirms", "caveats") if getattr(m, k) is not None]
    assert m.to_dict() == data and sorted(data) == sorted(RUNNER_KEYS + extra)
