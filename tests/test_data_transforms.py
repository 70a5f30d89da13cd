import random

import numpy as np
import pytest
import torch
from PIL import Image

from study.data.transforms import (
    MEAN_RGB,
    augment_pair,
    colorize,
    denormalize,
    random_crop,
    resize_pair,
    to_tensors,
)


def pair(h=20, w=30):
    """An image whose red channel encodes the column and a mask that encodes the column too."""
    cols = np.tile(np.arange(w, dtype=np.uint8), (h, 1))
    image = np.stack([cols * 8, np.zeros_like(cols), np.full_like(cols, 100)], axis=2)
    return Image.fromarray(image, "RGB"), Image.fromarray(cols % 7, "L")


def aligned(image: Image.Image, mask: Image.Image) -> bool:
    img, m = np.asarray(image), np.asarray(mask)
    valid = m != 255
    return bool(((img[..., 0][valid] // 8) % 7 == m[valid]).all())


def test_flip_keeps_image_and_mask_aligned():
    image, mask = pair()
    flip = dict(augment=["flip"], scale_range=(1, 1), rotate_degrees=0, crop_hw=(20, 30), ignore_index=255)
    for seed in range(10):
        out_i, out_m = augment_pair(image, mask, **flip, rng=random.Random(seed))
        assert aligned(out_i, out_m)
    flipped = [augment_pair(image, mask, **flip, rng=random.Random(s))[1] for s in range(10)]
    assert any(np.asarray(m)[0, 0] != np.asarray(mask)[0, 0] for m in flipped)  # some seeds flip


def test_crop_pads_with_ignore_and_mean_colour():
    image, mask = pair(10, 12)
    out_i, out_m = random_crop(image, mask, (16, 20), 255, random.Random(0))
    m, i = np.asarray(out_m), np.asarray(out_i)
    assert m.shape == (16, 20) and (m[10:, :] == 255).all() and (m[:, 12:] == 255).all()
    assert (i[12, 15] == np.array(MEAN_RGB)).all()
    assert np.array_equal(m[:10, :12], np.asarray(mask))


def test_crop_picks_a_window_of_the_right_size():
    image, mask = pair(40, 31)
    out_i, out_m = random_crop(image, mask, (16, 20), 255, random.Random(1))
    assert out_i.size == (20, 16) and out_m.size == (20, 16) and aligned(out_i, out_m)


@pytest.mark.parametrize("name", ["scale", "rotate", "blur", "flip"])
def test_each_augmentation_is_switchable_and_seeded(name):
    image, mask = pair(32, 32)
    recipe = dict(scale_range=(0.5, 2.0), rotate_degrees=10, crop_hw=(32, 32), ignore_index=255)
    a = augment_pair(image, mask, augment=[name], **recipe, rng=random.Random(5))
    b = augment_pair(image, mask, augment=[name], **recipe, rng=random.Random(5))
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
    changed = any(not np.array_equal(np.asarray(augment_pair(image, mask, augment=[name], **recipe,
                                                             rng=random.Random(s))[0]), np.asarray(image))
                  for s in range(6))
    assert changed
    none = augment_pair(image, mask, augment=[], **recipe, rng=random.Random(5))
    assert np.array_equal(np.asarray(none[0]), np.asarray(image))


def test_rotation_fills_the_mask_with_ignore():
    image, mask = pair(40, 40)
    _, m = augment_pair(image, mask, augment=["rotate"], scale_range=(1, 1), rotate_degrees=10, crop_hw=(40, 40),
                        ignore_index=255, rng=random.Random(3))
    assert (np.asarray(m) == 255).any()
    assert set(np.unique(np.asarray(m)).tolist()) <= set(range(7)) | {255}  # nearest: no blended labels


def test_resize_uses_nearest_for_masks():
    image, mask = pair(20, 30)
    _, m = resize_pair(image, mask, (41, 61))
    assert set(np.unique(np.asarray(m)).tolist()) <= set(range(7))


def test_tensors_normalisation_round_trip_and_colours():
    image, mask = pair()
    x, y = to_tensors(image, mask)
    assert x.shape == (3, 20, 30) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert np.abs(denormalize(x).astype(int) - np.asarray(image).astype(int)).max() <= 1
    rgb = colorize(np.array([[0, 1, 255]]), [(10, 20, 30), (40, 50, 60)])
    assert rgb.tolist() == [[[10, 20, 30], [40, 50, 60], [0, 0, 0]]]


def test_rotated_crop_at_zero_degrees_is_the_plain_crop():
    from study.data.transforms import rotated_crop

    image, mask = pair(40, 31)
    a = rotated_crop(image, mask, (16, 20), 0.0, 255, random.Random(4))
    b = random_crop(image, mask, (16, 20), 255, random.Random(4))
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
    small = rotated_crop(image, mask, (64, 64), 8.0, 255, random.Random(0))  # larger than the image: padded
    assert small[0].size == (64, 64) and (np.asarray(small[1]) == 255).mean() > 0.5


def test_normalisation_follows_the_given_mean_and_std():
    image = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8), "RGB")
    x, _ = to_tensors(image, Image.new("L", (1, 1)), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.allclose(x[:, 0, 0], torch.tensor([-1.0, 1.0, -0.6]))  # (v / 255 - 0.5) / 0.5
    assert denormalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).tolist() == [[[0, 255, 51]]]
    x, _ = to_tensors(image, Image.new("L", (1, 1)))  # default: ImageNet's statistics
    assert abs(float(x[0, 0, 0]) - (0 - 0.485) / 0.229) < 1e-6


def test_padding_uses_the_given_fill_colour():
    from study.data.transforms import mean_rgb

    assert mean_rgb((0.5, 0.5, 0.5)) == (128, 128, 128) and mean_rgb() == MEAN_RGB
    image, mask = pair(10, 12)
    out_i, _ = random_crop(image, mask, (16, 20), 255, random.Random(0), fill=(128, 128, 128))
    assert (np.asarray(out_i)[12, 15] == 128).all()
    out_i, out_m = augment_pair(image, mask, augment=["rotate"], scale_range=(1, 1), rotate_degrees=10,
                                crop_hw=(40, 40), ignore_index=255, rng=random.Random(3), fill=(1, 2, 3))
    assert (np.asarray(out_i)[np.asarray(out_m) == 255] == (1, 2, 3)).all(axis=-1).mean() > 0.9
