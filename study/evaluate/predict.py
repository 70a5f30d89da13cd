"""Inference modes and evaluation over a split, scored at each label's own resolution.

Modes: `whole` (one pass at the input size, no flip: fast, for training-time checks); `slide` (windows at the
input size); `multiscale` (scales relative to the input size); `official` (the test procedure of the official
PSPNet code, hszhao/semseg tool/test.py: long side = scale x base_size, windows padded on both sides, softmax
averaged with the flipped window, resized back to the label). Every windowed mode follows the official rules
(symmetric zero padding, stride ceil(2/3 crop), probabilities averaged, flip when eval.flip).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from study.atomic import atomic_write_with
from study.config import EvalConfig
from study.data.transforms import MEAN, STD, colorize, denormalize
from study.evaluate.metrics import ConfusionMatrix, per_image_counts


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)["out"].float()


def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear with half-pixel centres and no antialiasing (OpenCV's INTER_LINEAR); a no-op at equal size."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)


def scaled_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(h, w) rescaled so the long side is `long_side`, rounded with Python's round (as the official code)."""
    if h > w:
        return long_side, round(long_side / float(h) * w)
    return round(long_side / float(w) * h), long_side


def window_stride(crop: tuple[int, int]) -> tuple[int, int]:
    """Sliding-window stride: ceil(2/3 of the crop), the official rounding."""
    return math.ceil(crop[0] * (2 / 3)), math.ceil(crop[1] * (2 / 3))


def predict_whole(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits (N, K, H, W) from one forward pass over the whole image, no flip."""
    return _logits(model, x)


def window_probs(model: torch.nn.Module, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """Softmax of one window at its size; with `flip`, the mean with the un-flipped prediction of its mirror."""
    n, (h, w) = x.shape[0], x.shape[-2:]
    out = _logits(model, torch.cat([x, x.flip(-1)]) if flip else x)
    if tuple(out.shape[-2:]) != (h, w):  # a model that returns coarse logits: upsample as the official code
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
    prob = out.softmax(1)
    return (prob[:n] + prob[n:].flip(-1)) / 2 if flip else prob


def predict_slide(model: torch.nn.Module, x: torch.Tensor, crop: tuple[int, int], flip: bool = False
                  ) -> torch.Tensor:
    """Softmax probabilities (N, K, H, W) from windows of `crop` at stride ceil(2/3 crop), overlaps averaged.

    An image smaller than the crop is padded to it with 0 (the mean colour after normalisation), the padding
    split between both sides (the smaller half first), as the official implementation does; the last window of
    a row or column is aligned to the image's far edge.
    """
    n, _, h, w = x.shape
    ch, cw = crop
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        x = F.pad(x, (left, pad_w - left, top, pad_h - top))
    ph, pw = x.shape[-2:]
    sh, sw = window_stride(crop)
    rows, cols = math.ceil((ph - ch) / sh) + 1, math.ceil((pw - cw) / sw) + 1
    total, count = None, torch.zeros(1, 1, ph, pw, device=x.device)
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh + ch, ph), min(c * sw + cw, pw)
            y0, x0 = y1 - ch, x1 - cw
            prob = window_probs(model, x[:, :, y0:y1, x0:x1], flip)
            if total is None:
                total = torch.zeros(n, prob.shape[1], ph, pw, device=x.device)
            total[:, :, y0:y1, x0:x1] += prob
            count[:, :, y0:y1, x0:x1] += 1
    return (total / count)[:, :, top: top + h, left: left + w]


def predict_scales(model: torch.nn.Module, x: torch.Tensor, crop: tuple[int, int], scales: tuple[float, ...],
                   flip: bool, base_size: int | None, out_size: tuple[int, int]) -> torch.Tensor:
    """The official test procedure: mean over scales of sliding-window probabilities at `out_size`.

    At each scale s the image is resized (half-pixel bilinear) so its long side is round(s * base_size)
    (base_size None: the image's own long side), predicted by `predict_slide` (with `flip`), and its
    probabilities resized back to `out_size`.
    """
    h, w = x.shape[-2:]
    base = base_size if base_size else max(h, w)
    total = None
    for s in scales:
        xs = resize(x, scaled_size(h, w, round(s * base)))
        prob = resize(predict_slide(model, xs, crop, flip), out_size)
        total = prob if total is None else total + prob
    return total / len(scales)


def predict_multiscale(model: torch.nn.Module, x: torch.Tensor, scales: tuple[float, ...], flip: bool,
                       crop: tuple[int, int]) -> torch.Tensor:
    """Mean softmax over scales relative to x's own size (and flips), at x's size: `predict_scales` unanchored."""
    return predict_scales(model, x, crop, scales, flip, None, tuple(x.shape[-2:]))


def predict(model: torch.nn.Module, x: torch.Tensor, cfg: EvalConfig,
            out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Class scores at `out_size` (default: x's size) according to `cfg.mode`.

    whole: logits of one pass (softmax probabilities when resized); slide: `predict_slide` at x's size;
    multiscale: `predict_scales` relative to x's size; official: `predict_scales` with the long side anchored
    at `cfg.base_size`. slide, multiscale and official flip when `cfg.flip`.
    """
    size = tuple(out_size) if out_size is not None else tuple(x.shape[-2:])
    if cfg.mode == "whole":
        out = predict_whole(model, x)
        return out if tuple(out.shape[-2:]) == size else resize(out.softmax(1), size)
    if cfg.mode == "slide":
        return resize(predict_slide(model, x, cfg.crop_size, cfg.flip), size)
    base = cfg.base_size if cfg.mode == "official" else None
    return predict_scales(model, x, cfg.crop_size, cfg.scales, cfg.flip, base, size)


def protocol(cfg: EvalConfig, input_hw: tuple[int, int], label_hw: tuple[int, int]) -> dict[str, Any]:
    """What the evaluation did, for the record: mode, scales, flip, base size, crop, stride, sizes."""
    official = cfg.mode == "official"
    if official:
        model_in = scaled_size(*input_hw, round(cfg.base_size))
    else:
        model_in = tuple(input_hw)
    windows = cfg.mode != "whole"
    return {"mode": cfg.mode,
            "scales": list(cfg.scales) if cfg.mode in ("multiscale", "official") else [1.0],
            "flip": bool(cfg.flip) if windows else False,
            "base_size": cfg.base_size if official else None,
            "crop": list(cfg.crop_size) if windows else None,
            "stride": list(window_stride(cfg.crop_size)) if windows else None,
            "average": "softmax probabilities" if windows else "none (one pass)",
            "input_size": list(model_in),
            "scoring": "label",
            "label_size": list(label_hw)}


def _collate(batch: list) -> list:
    return batch


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, *, cfg: EvalConfig, device: torch.device,
             qualitative_dir: Path | None = None, workers: int = 0) -> dict[str, Any]:
    """Predict every image of `dataset`, score at each label's own size, return the scores.

    Predictions are resized to the label map (whatever size the model ran at) before counting. One confusion
    matrix and the per-image intersection/union counts are accumulated on the device and moved to the host once.
    Items of equal image and label size are batched (up to cfg.batch_size); the first `cfg.qualitative`
    predictions are saved as PNG strips (image | truth | prediction) under `qualitative_dir`.
    Adds to `scores()`: "qualitative", "confusion_matrix", "protocol" (see `protocol`), "per_image_intersection"
    and "per_image_union" (numpy int64 [n_images, K], dataset order, ignore pixels excluded), "per_image_ids"
    (each image's name, the same order).
    """
    was_training = model.training
    model.eval()
    k = dataset.num_classes
    cm = ConfusionMatrix(k, dataset.ignore_index, device)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, generator=torch.Generator())
    saved: list[str] = []
    inters: list[torch.Tensor] = []
    unions: list[torch.Tensor] = []
    sizes = None
    for batch in loader:
        groups: dict[tuple, list] = {}
        for i, (image, mask) in enumerate(batch):
            groups.setdefault((tuple(image.shape), tuple(mask.shape)), []).append((i, image, mask))
        rows: list = [None] * len(batch)  # per item: (intersection, union) rows, kept on the device
        for (image_shape, mask_shape), items in groups.items():
            sizes = sizes or (image_shape[-2:], mask_shape[-2:])
            x = torch.stack([im for _, im, _ in items]).to(device)
            y = torch.stack([m for _, _, m in items]).to(device)
            pred = predict(model, x, cfg, mask_shape[-2:]).argmax(1)
            cm.update(pred, y)
            inter, union = per_image_counts(pred, y, k, dataset.ignore_index)
            for j, (i, _, _) in enumerate(items):
                rows[i] = (inter[j], union[j])
            if qualitative_dir is not None and len(saved) < cfg.qualitative:
                for j in range(min(len(items), cfg.qualitative - len(saved))):
                    name = f"{len(saved):03d}.png"
                    shown = resize(x[j: j + 1], mask_shape[-2:])[0]
                    save_strip(qualitative_dir / name, shown, y[j], pred[j], dataset.palette, dataset.ignore_index,
                               *_normalisation(dataset))
                    saved.append(f"{qualitative_dir.name}/{name}")
        inters.extend(r[0] for r in rows)
        unions.extend(r[1] for r in rows)
    model.train(was_training)
    metrics = cm.compute(dataset.class_names)
    metrics["qualitative"] = saved
    metrics["confusion_matrix"] = cm.matrix.cpu().tolist()
    empty = torch.zeros(0, k, dtype=torch.int64)
    metrics["per_image_intersection"] = (torch.stack(inters) if inters else empty).cpu().numpy()
    metrics["per_image_union"] = (torch.stack(unions) if unions else empty).cpu().numpy()
    name = getattr(dataset, "image_id", str)
    metrics["per_image_ids"] = [name(i) for i in range(len(dataset))]
    metrics["protocol"] = protocol(cfg, *(sizes or ((0, 0), (0, 0))))
    return metrics


def _normalisation(dataset: Dataset) -> tuple[tuple, tuple]:
    """(mean, std) the dataset normalised its images with (its data config's; ImageNet's without one)."""
    cfg = getattr(dataset, "cfg", None)
    return getattr(cfg, "mean", MEAN), getattr(cfg, "std", STD)


def save_strip(path: Path, image: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor,
               palette: tuple, ignore_index: int, mean: tuple = MEAN, std: tuple = STD) -> None:
    """image | truth | prediction side by side, palette colours, written atomically."""
    strip = np.concatenate([denormalize(image, mean, std), colorize(truth.cpu().numpy(), palette, ignore_index),
                            colorize(pred.cpu().numpy(), palette, ignore_index)], axis=1)
    atomic_write_with(path, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))
