"""A split of the feature cache as a data set: (stored maps as float32 (C, h, w), label (H, W) int64).

Training samples draw a stored copy (the image or, with data.feature_flip, its mirror, whose label is mirrored
too) and, with data.feature_crop, a random window of the map with the label window under it (stride x the cells),
from the per-sample seed the training sampler hands out, so a run's data is a pure function of (seed, step) as on
images. Evaluation items are the whole un-mirrored map and the label at its own size.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from study.config import Config, DataConfig
from study.features.cache import CacheError, open_split


class FeatureDataset(Dataset):
    """Stored backbone maps of one split, with the attributes evaluation reads from an image data set."""

    def __init__(self, folder: Path, cfg: Config, split: str, train: bool):
        self.arrays, manifest = open_split(folder)
        self.name, self.split, self.train = cfg.data.name, split, train
        self.cfg: DataConfig = cfg.data
        self.class_names = tuple(manifest["class_names"])
        self.palette = tuple(tuple(c) for c in manifest["palette"])
        self.num_classes = len(self.class_names)
        self.ignore_index = cfg.data.ignore_index
        self.stride = int(manifest["stride"])
        self.copies = manifest["copies"]
        self.crop = cfg.data.feature_crop if train else None
        h, w = self.arrays.features.shape[-2:]
        if self.crop is not None and (self.crop[0] > h or self.crop[1] > w):
            raise CacheError(f"data.feature_crop: {tuple(self.crop)} exceeds the stored maps' {h}x{w} cells")

    def __len__(self) -> int:
        return self.arrays.features.shape[0]

    def image_id(self, index: int) -> str:
        return self.arrays.ids[index]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        label = self.arrays.label(index)
        if not self.train:
            return (torch.from_numpy(np.array(self.arrays.features[index, 0], dtype=np.float32)),
                    torch.from_numpy(label.astype(np.int64)))
        rng = random.Random(seed) if seed is not None else random
        copy = rng.randrange(len(self.copies))
        maps = self.arrays.features[index, copy]
        if self.copies[copy] == "hflip":
            label = label[:, ::-1]
        if self.crop is not None:
            (ch, cw), (h, w), s = self.crop, maps.shape[-2:], self.stride
            top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
            maps = maps[:, top: top + ch, left: left + cw]
            label = label[top * s: (top + ch) * s, left * s: (left + cw) * s]
        return (torch.from_numpy(np.array(maps, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)))
