import hashlib

import numpy as np
import pytest
import torch

from study.config import Config, ConfigError, DataConfig, config_hash
from study.data import synthetic
from study.data.build import LOADERS, build_dataset, class_names
from study.dataset_names import DATASETS, PROBE_KINDS

RED, BLUE = np.array(synthetic.CUE_COLOURS[synthetic.ROAD]), np.array(synthetic.CUE_COLOURS[synthetic.WATER])


def test_same_seed_same_scene_and_independent_of_order():
    a = synthetic.render_scene(3, "train", 17)
    synthetic.render_scene(3, "train", 5)  # rendering another scene in between changes nothing
    b = synthetic.render_scene(3, "train", 17)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    c = synthetic.render_scene(3, "train", 18)
    d = synthetic.render_scene(3, "val", 17)
    e = synthetic.render_scene(4, "train", 17)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0]) and not np.array_equal(a[0], e[0])


@pytest.mark.parametrize("extras", [False, True])
def test_labels_follow_the_region_rule(extras):
    for index in range(40):
        image, label, surface = synthetic.render_scene(0, "train", index, extras=extras)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8 and label.shape == (128, 128)
        # objects take the class of the surface they stand on
        assert (surface[label == synthetic.CAR] == synthetic.ROAD).all()
        assert (surface[label == synthetic.BOAT] == synthetic.WATER).all()
        # surface pixels carry their surface's class; only the curb is ignored
        for cls in (synthetic.ROAD, synthetic.WATER):
            assert (surface[label == cls] == cls).all()
        valid = set(range(len(synthetic.class_names(extras)))) | {synthetic.IGNORE}
        assert set(np.unique(label).tolist()) <= valid


def test_paired_object_classes_look_identical():
    """Cars and boats are drawn with the same texture: their pixel statistics match exactly per size."""
    seen = {synthetic.CAR: [], synthetic.BOAT: []}
    for index in range(60):
        image, label, _ = synthetic.render_scene(1, "train", index)
        for cls in seen:
            if (label == cls).any():
                seen[cls].extend(np.unique(image[label == cls].reshape(-1, 3), axis=0).tolist())
    assert seen[synthetic.CAR] and seen[synthetic.BOAT]
    assert {tuple(v) for v in seen[synthetic.CAR]} == {tuple(v) for v in seen[synthetic.BOAT]}


def test_cue_share_tells_the_surfaces_apart():
    """Both cue colours occur on every surface; their share differs (62/38)."""
    red, blue = np.array(synthetic.CUE_COLOURS[synthetic.ROAD]), np.array(synthetic.CUE_COLOURS[synthetic.WATER])
    counts = {synthetic.ROAD: [0, 0], synthetic.WATER: [0, 0]}
    for index in range(80):
        image, label, surface = synthetic.render_scene(2, "train", index)
        for cls in counts:
            pixels = image[(label == cls)]
            counts[cls][0] += int((pixels == red).all(1).sum())
            counts[cls][1] += int((pixels == blue).all(1).sum())
    road_share = counts[synthetic.ROAD][0] / sum(counts[synthetic.ROAD])
    water_share = counts[synthetic.WATER][1] / sum(counts[synthetic.WATER])
    assert 0.57 < road_share < 0.67 and 0.57 < water_share < 0.67
    assert min(counts[synthetic.ROAD]) > 0 and min(counts[synthetic.WATER]) > 0


def test_dataset_items_and_classes():
    cfg = DataConfig(train_size=6, val_size=3)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) == 6 and len(val) == 3 and train.train and not val.train
    assert train.class_names == ("road", "water", "car", "boat") and len(train.palette) == 4
    x, y = val[0]
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32 and y.dtype == torch.int64
    extras = build_dataset(DataConfig(probe_extras=True), "val")
    assert extras.num_classes == 8 and "skyscraper" in extras.class_names
    with pytest.raises(ValueError, match="probe: unknown split"):
        build_dataset(cfg, "nope")


def test_extra_classes_follow_their_rules():
    """Towers: one texture, class by height; pillows lie on beds and carry the bed's stripes, brighter."""
    seen = {synthetic.BUILDING: set(), synthetic.SKYSCRAPER: set()}
    pillows = 0
    for index in range(80):
        image, label, _ = synthetic.render_scene(0, "val", index, extras=True)
        for cls in seen:
            rows = np.nonzero((label == cls).any(axis=1))[0]
            if len(rows):
                height = rows[-1] - rows[0] + 1  # towers are drawn last but one: only beds can cover them
                assert (height <= 32) if cls == synthetic.BUILDING else (height >= 33)
                seen[cls] |= {tuple(v) for v in np.unique(image[label == cls].reshape(-1, 3), axis=0).tolist()}
        if (label == synthetic.PILLOW).any():
            pillows += 1
            ys, xs = np.nonzero(label == synthetic.PILLOW)
            box = label[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]  # pillows lie inside the bed
            assert (label == synthetic.BED).any() and set(np.unique(box).tolist()) <= {synthetic.BED, synthetic.PILLOW}
            assert image[label == synthetic.PILLOW].mean() > image[label == synthetic.BED].mean()
    assert seen[synthetic.BUILDING] and seen[synthetic.BUILDING] == seen[synthetic.SKYSCRAPER] and pillows >= 5


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (64, 64)])
def test_small_scenes_render(size):
    for index in range(20):
        image, label, _ = synthetic.render_scene(0, "train", index, size=size, extras=True)
        assert image.shape == (*size, 3) and label.shape == size


def test_dataset_items_repeat_and_differ():
    cfg = DataConfig(train_size=4, val_size=2, image_size=(64, 96))
    a, b = build_dataset(cfg, "val"), build_dataset(cfg, "val")
    assert a[1][0].shape == (3, 64, 96)
    assert torch.equal(a[1][0], b[1][0]) and torch.equal(a[1][1], b[1][1])
    assert not torch.equal(a[0][0], a[1][0])
    test = build_dataset(cfg, "test")
    assert len(test) == 2 and not test.train and not torch.equal(test[0][0], a[0][0])


def test_seed_worker_makes_augmentation_repeat():
    import random

    from study.data.build import seed_worker

    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        seed_worker(0)
        draws.append((random.random(), float(np.random.rand())))
    torch.manual_seed(8)
    seed_worker(0)
    assert draws[0] == draws[1] and draws[0][0] != random.random()


def test_the_measured_probe_is_unchanged():
    """The proportion probe's pixels are pinned: shipped studies were measured on exactly these scenes."""
    digest = hashlib.sha256()
    for index in range(10):
        for array in synthetic.render_scene(0, "train", index):
            digest.update(array.tobytes())
    assert digest.hexdigest() == "0cd0a6f1f6dfefb7fead0046fac8ae39417374fbcdaf1f289d827fb6cb2558a7"


def test_one_list_of_data_set_names():
    assert tuple(LOADERS) == DATASETS and "probe" in DATASETS
    assert class_names(DataConfig()) == ("road", "water", "car", "boat")
    assert class_names(DataConfig(probe_kind="local")) == ("road", "water")
    assert class_names(DataConfig(name="voc", root="x"))[15] == "person"
    with pytest.raises(ConfigError, match="data.name: must be one of probe, camvid"):
        DataConfig(name="nope").validate()


def test_probe_kind_is_checked_and_keeps_existing_hashes():
    assert config_hash(Config()) == config_hash(Config(data=DataConfig(probe_kind="proportion")))
    assert config_hash(Config()) != config_hash(Config(data=DataConfig(probe_kind="presence")))
    with pytest.raises(ConfigError, match="data.probe_kind: must be one of proportion, presence, local"):
        DataConfig(probe_kind="nope").validate()
    with pytest.raises(ConfigError, match="data.probe_kind: applies to data.name probe only"):
        DataConfig(name="camvid", root="x", probe_kind="local").validate()
    with pytest.raises(ConfigError, match="data.probe_extras"):
        DataConfig(probe_kind="presence", probe_extras=True).validate()
    with pytest.raises(ValueError, match="probe kind 'nope'"):
        synthetic.render_scene(0, "train", 0, kind="nope")


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_every_kind_repeats_and_builds(kind):
    a = synthetic.render_scene(5, "val", 3, kind=kind)
    b = synthetic.render_scene(5, "val", 3, kind=kind)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], synthetic.render_scene(5, "val", 4, kind=kind)[0])
    ds = build_dataset(DataConfig(train_size=2, val_size=2, probe_kind=kind), "val")
    x, y = ds[0]
    assert x.shape == (3, 128, 128) and ds.class_names == synthetic.class_names(False, kind)
    assert set(torch.unique(y).tolist()) <= set(range(ds.num_classes)) | {synthetic.IGNORE}


def _colour(image, colour):
    return (image == colour).all(axis=-1)


def test_presence_region_class_is_whether_red_occurs_in_it():
    roads, marks = 0, set()
    for index in range(60):
        image, label, surface = synthetic.render_scene(0, "train", index, kind="presence")
        red, blue = _colour(image, RED), _colour(image, BLUE)
        for cls in (synthetic.ROAD, synthetic.WATER):
            region = surface == cls
            if region.any():
                assert red[region].any() == (cls == synthetic.ROAD)  # the region's class: red occurs in it
                assert blue[region].any()  # blue everywhere: a mark is not the cue, its colour is
        assert set(np.unique(label[red]).tolist()) == ({synthetic.ROAD} if red.any() else set())
        if red.any():  # whole 6x6 squares, 1 to 3 of them (they may overlap)
            ys, xs = np.nonzero(red)
            assert synthetic.MARK ** 2 <= red.sum() <= 3 * synthetic.MARK ** 2
            assert red[ys.min(): ys.min() + synthetic.MARK, xs[ys == ys.min()].min():][:, :synthetic.MARK].all()
            marks.add(int(red.sum()))
        roads += bool((surface == synthetic.ROAD).any())
        assert (surface[label == synthetic.CAR] == synthetic.ROAD).all()
        assert (surface[label == synthetic.BOAT] == synthetic.WATER).all()
    assert 20 < roads < 60 and len(marks) >= 2


def _whole_red_square(red: np.ndarray, side: int) -> np.ndarray:
    """Top-left corners where a side x side square is all red."""
    s = np.zeros((red.shape[0] + 1, red.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = red.cumsum(0).cumsum(1)
    return (s[side:, side:] - s[:-side, side:] - s[side:, :-side] + s[:-side, :-side]) == side * side


def test_diluted_region_class_is_whether_a_red_mark_occurs_in_it_among_red_specks():
    """Red occurs on every surface (4 px specks, 4-16 a scene); a region is road exactly when a whole 6 px red
    square lies in it; the red on a region is mostly specks, whose number varies."""
    speck_share, specks_seen = [], set()
    for index in range(60):
        image, label, surface = synthetic.render_scene(0, "train", index, kind="diluted")
        red = _colour(image, RED)
        marks = np.zeros_like(red)
        for top, left in zip(*np.nonzero(_whole_red_square(red, synthetic.MARK)), strict=True):
            marks[top: top + synthetic.MARK, left: left + synthetic.MARK] = True
        for cls in (synthetic.ROAD, synthetic.WATER):
            region = surface == cls
            if region.any():
                assert marks[region].any() == (cls == synthetic.ROAD)
        if (surface == synthetic.WATER).any() and red[surface == synthetic.WATER].any():
            specks_seen.add(index)
        speck_share.append((red & ~marks).sum() / max(1, red.sum()))
    assert len(specks_seen) > 20  # water carries red too
    assert np.mean(speck_share) > 0.5  # most red is specks
    presence = synthetic.render_scene(0, "train", 0, kind="presence")
    diluted = synthetic.render_scene(0, "train", 0, kind="diluted")
    assert np.array_equal(presence[1], diluted[1])  # the same layout and labels: only the specks are added


def test_shortcut_scenes_carry_the_green_mark_on_road_in_training_and_on_water_elsewhere():
    """Unsplit scenes; exactly one whole green 6 px mark on the surface, in training scenes exactly when the scene is
    road, in val and test scenes exactly when it is water; the label is the surface, and the dots carry the other
    surface's share in about a fifth of the scenes."""
    green = np.array(synthetic.DECOY_RGB)
    seen, reversed_cue = set(), []
    for split in ("train", "val", "test"):
        for index in range(30):
            image, label, surface = synthetic.render_scene(0, split, index, kind="shortcut")
            assert len(np.unique(surface)) == 1  # never split
            mark = (image == green).all(-1)
            road = surface[0, 0] == synthetic.ROAD
            assert mark.any() == (road if split == "train" else not road)
            if mark.any():
                rows, cols = np.nonzero(mark)
                assert mark.sum() == synthetic.MARK ** 2 and np.ptp(rows) == np.ptp(cols) == synthetic.MARK - 1
                assert (label[mark] == surface[0, 0]).all()  # drawn on the surface, labelled as it
            seen.add((split, bool(road)))
            red = (image == np.array(synthetic.CUE_COLOURS[synthetic.ROAD])).all(-1).sum()
            blue = (image == np.array(synthetic.CUE_COLOURS[synthetic.WATER])).all(-1).sum()
            reversed_cue.append((red > blue) != road)
    assert len(seen) == 6  # both surfaces in every split
    assert 0.1 < np.mean(reversed_cue) < 0.3  # the dots point the wrong way in about a fifth of the scenes


def test_window_sum_by_hand():
    a = np.array([[1, 0, 2], [0, 3, 0]])
    assert synthetic.window_sum(a, 1).tolist() == [[4, 6, 5], [4, 6, 5]]
    assert synthetic.window_sum(a, 0).tolist() == a.tolist()


def _local_label_by_hand(image, y, x, r=synthetic.LOCAL_RADIUS, k=synthetic.LOCAL_CELLS):
    """The local rule read off the image at pixel (y, x), looking only within r px of it (k cells each side)."""
    top, left = max(0, 2 * (y // 2 - k)), max(0, 2 * (x // 2 - k))
    bottom, right = min(image.shape[0], 2 * (y // 2 + k + 1)), min(image.shape[1], 2 * (x // 2 + k + 1))
    assert max(y - top, bottom - 1 - y, x - left, right - 1 - x) <= r  # the window lies within r px
    window = image[top:bottom, left:right]
    votes = (int(_colour(window, RED).sum()) - int(_colour(window, BLUE).sum())) // 4  # 2x2 dots, cell-aligned
    return synthetic.ROAD if votes > 0 else synthetic.WATER if votes < 0 else synthetic.IGNORE


def test_local_label_is_decided_within_the_window():
    assert synthetic.LOCAL_RADIUS == 11  # far inside the probe backbone's receptive field (about 71 px)
    rng = np.random.default_rng(0)
    shares = []
    for index in range(4):
        image, label, surface = synthetic.render_scene(1, "val", index, kind="local")
        assert np.array_equal(label, surface)
        for y, x in rng.integers(0, 128, size=(150, 2)):
            assert label[y, x] == _local_label_by_hand(image, int(y), int(x))
        shares.append([float((label == c).mean()) for c in (synthetic.ROAD, synthetic.WATER, synthetic.IGNORE)])
    road, water, ignored = np.mean(shares, axis=0)
    assert 0.3 < road < 0.6 and 0.3 < water < 0.6 and ignored < 0.25


def test_local_fine_label_is_decided_within_5_px_a_scale_no_bin_has():
    assert synthetic.FINE_RADIUS == 5  # a 10 px window: the 6x6 bin's cell at 128 px is 21.3 px, the 3x3 bin's 42.7
    rng = np.random.default_rng(1)
    shares, dots = [], []
    for index in range(4):
        image, label, surface = synthetic.render_scene(2, "train", index, kind="local_fine")
        assert np.array_equal(label, surface)
        for y, x in rng.integers(0, 128, size=(150, 2)):
            by_hand = _local_label_by_hand(image, int(y), int(x), synthetic.FINE_RADIUS, synthetic.FINE_CELLS)
            assert label[y, x] == by_hand
        shares.append([float((label == c).mean()) for c in (synthetic.ROAD, synthetic.WATER, synthetic.IGNORE)])
        dots.append((_colour(image, RED).sum() + _colour(image, BLUE).sum()) / 4 / (64 * 64))
    road, water, ignored = np.mean(shares, axis=0)
    assert 0.35 < road < 0.5 and 0.35 < water < 0.5 and ignored < 0.2
    assert 0.25 < np.mean(dots) < 0.35  # dots on 30% of the 2x2 cells
    assert class_names(DataConfig(probe_kind="local_fine")) == ("road", "water")


def test_local_scene_with_odd_size_ignores_the_last_row():
    image, label, _ = synthetic.render_scene(0, "train", 0, size=(25, 31), kind="local")
    assert image.shape == (25, 31, 3) and (label[-1] == synthetic.IGNORE).all() and (label[:, -1] == 255).all()


def test_misaligned_splits_miss_every_bin_boundary():
    cuts = set()
    for index in range(80):
        _, label, surface = synthetic.render_scene(0, "train", index, kind="misaligned")
        for cls in (synthetic.ROAD, synthetic.WATER):
            assert (surface[label == cls] == cls).all()
        for axis in (0, 1):
            changes = np.nonzero(np.diff(surface.astype(int), axis=axis).any(axis=1 - axis))[0]
            cuts |= {int(c) + 1 for c in changes}
    assert cuts == {32, 53, 96}
    boundaries = {128 * k / b for b in (2, 3, 6) for k in range(1, b)}
    assert min(abs(c - b) for c in cuts for b in boundaries) > 10
