import numpy as np
import pytest
import torch

from study.config import DataConfig
from study.data import synthetic
from study.data.build import build_dataset


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
