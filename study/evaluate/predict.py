"""Inference modes (whole image, sliding window, multi-scale with flip) and evaluation over a split."""

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
from study.data.transforms import colorize, denormalize
from study.evaluate.metrics import ConfusionMatrix


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)["out"].float()


def predict_whole(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores (N, K, H, W) from one forward pass over the whole image."""
    return _logits(model, x)


def predict_slide(model: torch.nn.Module, x: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """Windows of `crop` with stride 2/3 of it; images smaller than a window are padded; overlaps averaged."""
    n, _, h, w = x.shape
    ch, cw = crop
    ph, pw = max(h, ch), max(w, cw)
    if (ph, pw) != (h, w):
        x = F.pad(x, (0, pw - w, 0, ph - h))
    sh, sw = max(1, math.ceil(ch * 2 / 3)), max(1, math.ceil(cw * 2 / 3))
    rows = max(1, math.ceil((ph - ch) / sh) + 1)
    cols = max(1, math.ceil((pw - cw) / sw) + 1)
    total, count = None, torch.zeros(1, 1, ph, pw, device=x.device)
    for r in range(rows):
        for c in range(cols):
            top, left = min(r * sh, ph - ch), min(c * sw, pw - cw)
            out = _logits(model, x[:, :, top: top + ch, left: left + cw])
            if total is None:
                total = torch.zeros(n, out.shape[1], ph, pw, device=x.device)
            total[:, :, top: top + ch, left: left + cw] += out
            count[:, :, top: top + ch, left: left + cw] += 1
    return (total / count)[:, :, :h, :w]


def predict_multiscale(model: torch.nn.Module, x: torch.Tensor, scales: tuple[float, ...], flip: bool,
                       crop: tuple[int, int], align_corners: bool = True) -> torch.Tensor:
    """Average of softmax scores over scales (and horizontal flips), each at the original size.

    A scaled image larger than the crop is predicted with sliding windows, as the official implementation does.
    """
    h, w = x.shape[-2:]
    total = None
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners) if s != 1 else x
        views = [xs, xs.flip(-1)] if flip else [xs]
        for i, view in enumerate(views):
            if size[0] > crop[0] or size[1] > crop[1]:
                out = predict_slide(model, view, crop)
            else:
                out = predict_whole(model, view)
            if i == 1:
                out = out.flip(-1)
            prob = F.interpolate(out.softmax(1), size=(h, w), mode="bilinear", align_corners=align_corners)
            total = prob if total is None else total + prob
    return total


def predict(model: torch.nn.Module, x: torch.Tensor, cfg: EvalConfig) -> torch.Tensor:
    """Class scores at x's size according to `cfg.mode`."""
    if cfg.mode == "whole":
        return predict_whole(model, x)
    if cfg.mode == "slide":
        return predict_slide(model, x, cfg.crop_size)
    return predict_multiscale(model, x, cfg.scales, cfg.flip, cfg.crop_size)


def _collate(batch: list) -> list:
    return batch


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, cfg: EvalConfig, device: torch.device,
             qualitative_dir: Path | None = None, workers: int = 0) -> dict[str, Any]:
    """Predict every image of `dataset`, accumulate one confusion matrix on the device, return the scores.

    Images of equal size are batched (up to cfg.batch_size); the first `cfg.qualitative` predictions are saved
    as PNG strips (image | truth | prediction) under `qualitative_dir`, listed in the result's "qualitative".
    """
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(dataset.num_classes, dataset.ignore_index, device)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, generator=torch.Generator())
    saved: list[str] = []
    for batch in loader:
        groups: dict[tuple, list] = {}
        for image, mask in batch:
            groups.setdefault(tuple(image.shape), []).append((image, mask))
        for items in groups.values():
            x = torch.stack([i for i, _ in items]).to(device)
            y = torch.stack([m for _, m in items]).to(device)
            pred = predict(model, x, cfg).argmax(1)
            cm.update(pred, y)
            if qualitative_dir is not None and len(saved) < cfg.qualitative:
                for k in range(min(len(items), cfg.qualitative - len(saved))):
                    name = f"{len(saved):03d}.png"
                    save_strip(qualitative_dir / name, x[k], y[k], pred[k], dataset.palette, dataset.ignore_index)
                    saved.append(f"{qualitative_dir.name}/{name}")
    model.train(was_training)
    metrics = cm.compute(dataset.class_names)
    metrics["qualitative"] = saved
    metrics["confusion_matrix"] = cm.matrix.cpu().tolist()
    return metrics


def save_strip(path: Path, image: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor,
               palette: tuple, ignore_index: int) -> None:
    """image | truth | prediction side by side, palette colours, written atomically."""
    strip = np.concatenate([denormalize(image), colorize(truth.cpu().numpy(), palette, ignore_index),
                            colorize(pred.cpu().numpy(), palette, ignore_index)], axis=1)
    atomic_write_with(path, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))
