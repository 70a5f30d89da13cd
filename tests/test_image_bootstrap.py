import math

import numpy as np
import pytest
from fabricate import fabricate  # noqa: I001

from study.record import RunRecord, pack_counts
from study.results.claims import judge_claims
from study.results.images import (
    MIN_GROUPS,
    bootstrap_mious,
    image_interval,
    labelme_collection,
    miou_of_counts,
    resample_weights,
    resampled_miou,
    two_level_interval,
    video_sequence,
)
from study.results.table import build_table, load_records


def test_miou_of_counts_counts_absent_classes_as_zero():
    inter = np.array([[1, 0, 0], [1, 2, 0]])
    union = np.array([[2, 0, 0], [2, 2, 0]])
    assert miou_of_counts(inter[:, :2], union[:, :2]) == pytest.approx((2 / 4 + 2 / 2) / 2)
    assert miou_of_counts(inter, union) == pytest.approx((2 / 4 + 2 / 2 + 0) / 3)


def test_resamples_are_fixed_and_weight_one_is_the_split():
    w = resample_weights(7, resamples=50)
    assert w.shape == (50, 7) and (w.sum(1) == 7).all()
    assert np.array_equal(w, resample_weights(7, resamples=50))
    inter = np.array([[1, 0], [1, 2], [0, 3]])
    union = np.array([[2, 1], [2, 2], [1, 4]])
    assert resampled_miou(inter, union, np.ones((1, 3)))[0] == pytest.approx(miou_of_counts(inter, union))
    only_first = np.array([[3.0, 0, 0]])  # image 0 three times
    assert resampled_miou(inter, union, only_first)[0] == pytest.approx((1 / 2 + 0 / 1) / 2)


def record(variant, seed, inter, union, ids=None, data="probe"):
    per_image = {"intersection": pack_counts(inter), "union": pack_counts(union)}
    if ids is not None:
        per_image["ids"] = list(ids)
    return RunRecord(id=f"{variant}__s{seed}", study="s", variant=variant, seed=seed, config={"data": {"name": data}},
                     config_hash="h", status="completed", metrics={"per_image": per_image})


def test_a_constant_iou_gap_gives_a_point_interval():
    rng = np.random.default_rng(0)
    union = 4 * rng.integers(1, 50, size=(40, 5))
    boot = bootstrap_mious([record("A", s, union * 3 // 4, union) for s in (0, 1)]
                           + [record("B", s, union // 2, union) for s in (0, 1)]).mious
    assert sorted(boot) == [("A", 0), ("A", 1), ("B", 0), ("B", 1)] and boot[("A", 0)].shape == (2000,)
    lo, hi = image_interval(boot, "A", "B", [0, 1])
    assert lo == pytest.approx(25.0) and hi == pytest.approx(25.0)  # IoU 0.75 vs 0.5 on every image
    assert all(math.isnan(v) for v in image_interval(boot, "A", "B", [0, 1, 2]))  # seed 2 has no counts


def test_interval_covers_the_split_difference_and_narrows_with_more_images():
    rng = np.random.default_rng(1)

    def width(n_images):
        union = rng.integers(50, 100, size=(n_images, 4))
        a = (union * rng.uniform(0.4, 0.8, size=union.shape)).astype(int)
        b = (union * rng.uniform(0.3, 0.7, size=union.shape)).astype(int)
        boot = bootstrap_mious([record("A", 0, a, union), record("B", 0, b, union)]).mious
        lo, hi = image_interval(boot, "A", "B", [0])
        full = 100 * (miou_of_counts(a, union) - miou_of_counts(b, union))
        assert lo < full < hi
        return hi - lo

    assert width(400) < 0.7 * width(50)  # ~ 1/sqrt(8) of it in theory


def test_runs_on_different_splits_or_without_counts_give_nothing():
    a = record("A", 0, np.ones((6, 2), int), np.ones((6, 2), int))
    b = record("B", 0, np.ones((7, 2), int), np.ones((7, 2), int))
    assert bootstrap_mious([a, b]).mious == {} and "different image sets" in bootstrap_mious([a, b]).note
    bare = RunRecord(id="C__s0", study="s", variant="C", seed=0, config={}, config_hash="h", status="completed")
    assert list(bootstrap_mious([a, bare]).mious) == [("A", 0)]
    assert "no per-image counts" in bootstrap_mious([bare]).note
    tiny = record("A", 0, np.ones((MIN_GROUPS - 1, 2), int), np.ones((MIN_GROUPS - 1, 2), int))
    assert bootstrap_mious([tiny]).mious == {} and "fewer than" in bootstrap_mious([tiny]).note


def test_labelmefacade_photographs_are_grouped_by_their_labelme_collection():
    assert labelme_collection("static_boston_street_april__p1010213") == "static_boston_street_april"
    assert labelme_collection("test/05june05_static_street_boston__p1010736") == "05june05_static_street_boston"
    ids = [f"{c}__{i}" for c in "abcdef" for i in range(4)]
    union = np.random.default_rng(0).integers(10, 50, size=(24, 3))
    boot = bootstrap_mious([record("A", 0, union // 2, union, ids, "labelmefacade")])
    assert boot.groups == 6 and boot.grouping == "labelme collection"


def test_camvid_frames_are_grouped_by_their_video_sequence():
    assert video_sequence("0016E5_07959") == "0016E5" and video_sequence("Seq05VD_f00000") == "Seq05VD"
    assert video_sequence("val/0001TP_006690") == "0001TP"
    w = resample_weights(5, resamples=200, groups=["a", "a", "b", "c", "c"])
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all()
    assert (w[:, [0, 2, 3]].sum(1) == 3).all()  # three groups drawn per resample, an image weighs its group's draws
    sequences = ["0001TP", "0006R0", "0016E5", "Seq05VD", "0005VD", "0009TP"]
    ids = [f"{s}_{i:05d}" for s in sequences for i in range(4)]
    rng = np.random.default_rng(3)
    union = rng.integers(10, 50, size=(24, 3))
    runs = [record("A", 0, union // 2, union, ids, "camvid"), record("B", 0, union // 3, union, ids, "camvid")]
    boot = bootstrap_mious(runs)
    assert boot.groups == 6 and boot.grouping == "video sequence" and boot.note == ""
    assert bootstrap_mious([record("A", 0, union // 2, union, ids, "probe")]).groups == 24  # each image
    one = [f"0016E5_{i:05d}" for i in range(24)]  # CamVid val: one sequence, no spread to show
    empty = bootstrap_mious([record("A", 0, union // 2, union, one, "camvid")])
    assert empty.mious == {} and "1 group(s) (video sequence)" in empty.note


def test_the_two_level_interval_adds_the_seeds_spread():
    rng = np.random.default_rng(4)
    union = rng.integers(50, 100, size=(60, 4))
    runs = []
    for seed, gap in enumerate([0.05, 0.25, 0.15, 0.35, 0.10]):  # the gap moves with the seed
        runs += [record("A", seed, (union * (0.4 + gap)).astype(int), union),
                 record("B", seed, (union * 0.4).astype(int), union)]
    boot = bootstrap_mious(runs).mious
    img = image_interval(boot, "A", "B", list(range(5)))
    two = two_level_interval(boot, "A", "B", list(range(5)))
    assert two[1] - two[0] > 3 * (img[1] - img[0])
    assert 100 * 0.05 - 1 < two[0] < img[0] < img[1] < two[1] < 100 * 0.35 + 1
    assert two == two_level_interval(boot, "A", "B", list(range(5)))  # fixed resamples
    assert all(math.isnan(v) for v in two_level_interval(boot, "A", "B", [0, 9]))


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_claim_rows_carry_the_image_interval_at_full_size(tmp_path):
    """6 runs x 2000 images x 150 classes x 2000 resamples (ADE20K's size); its speed is a benchmark's business,
    not a timed assertion that a loaded machine fails."""
    rng = np.random.default_rng(2)
    union = rng.integers(1000, 5000, size=(2000, 150))
    per_image = {}
    for seed in range(3):
        per_image[("FCN", seed)] = (union // 2, union)
        per_image[("B1-AVE", seed)] = (union * 3 // 5, union)
    study = fabricate(tmp_path, {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.60, 0.61, 0.59]}, per_image=per_image)
    boot = bootstrap_mious(load_records(study))
    row = judge_claims(build_table(study), images=boot)[0]
    assert row.image_ci_low == pytest.approx(10.0, abs=0.01) and row.image_ci_high == pytest.approx(10.0, abs=0.01)
    assert row.two_level_ci_low == pytest.approx(10.0, abs=0.01)  # the same gap on every seed
    assert row.diff == pytest.approx(9.0)  # the seed difference comes from the records' miou
