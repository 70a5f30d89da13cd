"""Cityscapes fine annotations: leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/.../*_gtFine_labelIds.png.

The 19 evaluation classes get train ids 0..18; every other label id is ignored.
"""

from __future__ import annotations

from pathlib import Path

from study.config import DataConfig
from study.data.common import DatasetError, FilePairDataset, label_table, require_dir

CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
           (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
           (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)  # -> train ids 0..18


def open_cityscapes(cfg: DataConfig, split: str, train: bool) -> FilePairDataset:
    root = require_dir(Path(cfg.root), "Cityscapes root")
    images = require_dir(root / "leftImg8bit" / split, f"Cityscapes '{split}' leftImg8bit")
    masks = require_dir(root / "gtFine" / split, f"Cityscapes '{split}' gtFine")
    pairs = []
    for image in sorted(images.glob("*/*_leftImg8bit.png")):
        stem = image.name.removesuffix("_leftImg8bit.png")
        mask = masks / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not mask.is_file():
            raise DatasetError(f"{mask}: label map for {image.name} not found")
        pairs.append((image, mask))
    ignored = [v for v in range(256) if v not in LABEL_IDS]
    table = label_table({raw: i for i, raw in enumerate(LABEL_IDS)}, ignore_raw=ignored, ignore_index=cfg.ignore_index)
    return FilePairDataset("cityscapes", split, pairs, table, CLASSES, PALETTE, cfg, train, root)
