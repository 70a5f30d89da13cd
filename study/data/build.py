"""DataConfig + split -> dataset. `LOADERS` is the one map from a data set name (study.dataset_names.DATASETS) to its
loader and its class names."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from study.config import DataConfig
from study.data import ade20k, camvid, cityscapes, labelmefacade, synthetic, voc
from study.data.common import SegDataset
from study.data.folder import open_folder


@dataclass(frozen=True)
class Loader:
    """How to open one data set, and its class names without opening it (None: read from the data, as folder)."""

    open: Callable[[DataConfig, str, bool], SegDataset]
    classes: Callable[[DataConfig], tuple[str, ...]] | None


LOADERS: dict[str, Loader] = {
    "probe": Loader(synthetic.ProbeDataset, lambda cfg: synthetic.class_names(cfg.probe_extras, cfg.probe_kind)),
    "camvid": Loader(camvid.open_camvid, lambda cfg: camvid.CLASSES),
    "ade20k": Loader(ade20k.open_ade20k, lambda cfg: ade20k.CLASSES),
    "cityscapes": Loader(cityscapes.open_cityscapes, lambda cfg: cityscapes.CLASSES),
    "voc": Loader(voc.open_voc, lambda cfg: voc.CLASSES),
    "labelmefacade": Loader(labelmefacade.open_labelmefacade, lambda cfg: labelmefacade.CLASSES),
    "folder": Loader(open_folder, None),
}


def class_names(cfg: DataConfig) -> tuple[str, ...]:
    """The class names of data set `cfg.name`, without opening it (the folder layout reads its classes.txt)."""
    classes = LOADERS[cfg.name].classes
    if classes is not None:
        return tuple(classes(cfg))
    return build_dataset(cfg, cfg.val_split, train=False).class_names


def build_dataset(cfg: DataConfig, split: str, train: bool | None = None) -> SegDataset:
    """The data set `cfg.name` at `split`; `train` (default: split == cfg.train_split) turns augmentation on."""
    train = split == cfg.train_split if train is None else train
    return LOADERS[cfg.name].open(cfg, split, train)


def check_data(cfg: DataConfig) -> None:
    """Before a study runs: its train and val splits open (files there, sizes matching) and agree on the classes;
    a folder data set's masks are read through, so a label outside 0..K-1 and 255 stops the study up front rather
    than failing every cell. Raises DatasetError naming the file."""
    from study.data.common import DatasetError, FilePairDataset

    if cfg.name == "probe":
        return
    train, val = build_dataset(cfg, cfg.train_split, train=False), build_dataset(cfg, cfg.val_split, train=False)
    if train.class_names != val.class_names:
        raise DatasetError(f"{cfg.root}: split '{cfg.train_split}' has {train.num_classes} classes, "
                           f"'{cfg.val_split}' {val.num_classes}")
    if cfg.name == "folder":
        for dataset in (train, val):
            if isinstance(dataset, FilePairDataset):
                dataset.check_labels()


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed Python and NumPy from torch's per-worker seed so augmentation repeats."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
