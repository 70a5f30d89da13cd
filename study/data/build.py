"""DataConfig + split -> dataset. The one place that maps a data set name to its loader."""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image

from study.config import DataConfig
from study.data import ade20k, camvid, cityscapes, synthetic, voc
from study.data.ade20k import open_ade20k
from study.data.camvid import open_camvid
from study.data.cityscapes import open_cityscapes
from study.data.common import DatasetError, SegDataset
from study.data.folder import open_folder
from study.data.voc import open_voc

_SCENES: dict[tuple, tuple[Image.Image, Image.Image]] = {}


class ProbeDataset(SegDataset):
    """The context probe (study.data.synthetic) as a dataset; scenes are rendered on first use and cached."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        names = synthetic.class_names(cfg.probe_extras)
        super().__init__("probe", split, names, synthetic.PALETTE[: len(names)], cfg, train)
        sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.val_size}
        if split not in sizes:
            raise DatasetError(f"probe: unknown split '{split}' (train, val, test)")
        self.length = sizes[split]

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[Image.Image, Image.Image]:
        key = (self.cfg.data_seed, self.split, index, self.cfg.image_size, self.cfg.probe_extras)
        if key not in _SCENES:  # shared by every run in this process (a study worker runs many)
            image, label, _ = synthetic.render_scene(*key)
            _SCENES[key] = (Image.fromarray(image, mode="RGB"), Image.fromarray(label, mode="L"))
        return _SCENES[key]


LOADERS = {"camvid": open_camvid, "ade20k": open_ade20k, "cityscapes": open_cityscapes, "voc": open_voc,
           "folder": open_folder}


def class_names(cfg: DataConfig) -> tuple[str, ...]:
    """The class names of data set `cfg.name`, without opening it (the folder layout reads its classes.txt)."""
    if cfg.name == "probe":
        return synthetic.class_names(cfg.probe_extras)
    fixed = {"camvid": camvid.CLASSES, "ade20k": ade20k.CLASSES, "cityscapes": cityscapes.CLASSES,
             "voc": voc.CLASSES}
    if cfg.name in fixed:
        return tuple(fixed[cfg.name])
    return build_dataset(cfg, cfg.val_split, train=False).class_names


def build_dataset(cfg: DataConfig, split: str, train: bool | None = None) -> SegDataset:
    """The data set `cfg.name` at `split`; `train` (default: split == cfg.train_split) turns augmentation on."""
    train = split == cfg.train_split if train is None else train
    if cfg.name == "probe":
        return ProbeDataset(cfg, split, train)
    return LOADERS[cfg.name](cfg, split, train)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed Python and NumPy from torch's per-worker seed so augmentation repeats."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
