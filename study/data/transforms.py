"""Paired image/mask transforms: the paper's training augmentation (each switchable) and evaluation preprocessing.

Images are PIL RGB, masks PIL "L" with class ids (ignore = 255). Randomness comes from the `rng` passed in: the
training sampler gives every (step, sample) its own seed, so augmentation is the same whatever the number of
workers, and a resumed run sees exactly the crops it would have seen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: the default input normalisation (data.mean, data.std)
STD = (0.229, 0.224, 0.225)


def mean_rgb(mean: Sequence[float] = MEAN) -> tuple[int, int, int]:
    """The pad/fill colour: the mean colour, which normalises to ~0."""
    return tuple(int(round(255 * m)) for m in mean)


MEAN_RGB = mean_rgb(MEAN)


def resize_pair(image: Image.Image, mask: Image.Image, size_hw: Sequence[int]) -> tuple[Image.Image, Image.Image]:
    """Bilinear for the image, nearest for the mask."""
    wh = (int(size_hw[1]), int(size_hw[0]))
    if image.size == wh:
        return image, mask
    return image.resize(wh, Image.BILINEAR), mask.resize(wh, Image.NEAREST)


def augment_pair(image: Image.Image, mask: Image.Image, *, augment: Sequence[str], scale_range: Sequence[float],
                 rotate_degrees: float, crop_hw: Sequence[int], ignore_index: int, rng: random.Random,
                 fill: tuple[int, int, int] = MEAN_RGB) -> tuple[Image.Image, Image.Image]:
    """Random scale, horizontal flip, rotation, padded random crop, Gaussian blur (each named in `augment`);
    image pixels outside the source are `fill` (the mean colour)."""
    if "scale" in augment:
        s = rng.uniform(scale_range[0], scale_range[1])
        w, h = image.size
        image, mask = resize_pair(image, mask, (max(1, round(h * s)), max(1, round(w * s))))
    if "flip" in augment and rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
    if "rotate" in augment and rotate_degrees > 0:
        angle = rng.uniform(-rotate_degrees, rotate_degrees)
        image, mask = rotated_crop(image, mask, crop_hw, angle, ignore_index, rng, fill)
    else:
        image, mask = random_crop(image, mask, crop_hw, ignore_index, rng, fill)
    if "blur" in augment and rng.random() < 0.5:  # after the crop: same pixels, a fraction of the work
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.2, 1.5)))
    return image, mask


def _window(img: Image.Image, box: tuple[int, int, int, int], fill) -> Image.Image:
    """img.crop(box) where the parts of box outside img are `fill` (PIL would fill them with 0)."""
    left, top, right, bottom = box
    canvas = Image.new(img.mode, (right - left, bottom - top), fill)
    inner = (max(left, 0), max(top, 0), min(right, img.width), min(bottom, img.height))
    if inner[0] < inner[2] and inner[1] < inner[3]:
        canvas.paste(img.crop(inner), (inner[0] - left, inner[1] - top))
    return canvas


def rotated_crop(image: Image.Image, mask: Image.Image, crop_hw: Sequence[int], angle: float, ignore_index: int,
                 rng: random.Random, fill: tuple[int, int, int] = MEAN_RGB) -> tuple[Image.Image, Image.Image]:
    """A random crop of the image rotated by `angle` about the crop's centre (fills: mean colour / ignore).

    Only the window that the rotated crop covers is rotated, not the whole (possibly 2x scaled) image.
    """
    ch, cw = int(crop_hw[0]), int(crop_hw[1])
    w, h = image.size
    top, left = rng.randint(0, max(h, ch) - ch), rng.randint(0, max(w, cw) - cw)
    rad = math.radians(abs(angle))
    ww = math.ceil(cw * math.cos(rad) + ch * math.sin(rad)) + 2
    wh = math.ceil(cw * math.sin(rad) + ch * math.cos(rad)) + 2
    cx, cy = left + cw // 2, top + ch // 2
    box = (cx - ww // 2, cy - wh // 2, cx - ww // 2 + ww, cy - wh // 2 + wh)
    image = _window(image, box, fill).rotate(angle, resample=Image.BILINEAR, fillcolor=fill)
    mask = _window(mask, box, ignore_index).rotate(angle, resample=Image.NEAREST, fillcolor=ignore_index)
    inner = ((ww - cw) // 2, (wh - ch) // 2, (ww - cw) // 2 + cw, (wh - ch) // 2 + ch)
    return image.crop(inner), mask.crop(inner)


def random_crop(image: Image.Image, mask: Image.Image, crop_hw: Sequence[int], ignore_index: int,
                rng: random.Random, fill: tuple[int, int, int] = MEAN_RGB) -> tuple[Image.Image, Image.Image]:
    """Pad (image with the mean colour, mask with the ignore label) up to the crop, then crop at random."""
    ch, cw = int(crop_hw[0]), int(crop_hw[1])
    w, h = image.size
    if h < ch or w < cw:
        pw, ph = max(w, cw), max(h, ch)
        padded_image = Image.new("RGB", (pw, ph), fill)
        padded_image.paste(image, (0, 0))
        padded_mask = Image.new("L", (pw, ph), ignore_index)
        padded_mask.paste(mask, (0, 0))
        image, mask, w, h = padded_image, padded_mask, pw, ph
    top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
    box = (left, top, left + cw, top + ch)
    return image.crop(box), mask.crop(box)


def to_tensors(image: Image.Image, mask: Image.Image, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL pair -> (float32 (3,H,W) normalised as (x/255 - mean) / std, int64 (H,W))."""
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    y = torch.from_numpy(np.asarray(mask, dtype=np.uint8).astype(np.int64))
    return x, y


def denormalize(image: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> np.ndarray:
    """Normalised (3,H,W) tensor -> uint8 (H,W,3) for pictures."""
    x = image.detach().float().cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """Class-id map -> uint8 (H,W,3) in palette colours; ignored (and unknown) pixels black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    table[ignore_index] = 0
    return table[np.asarray(mask).astype(np.uint8)]
