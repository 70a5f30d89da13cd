"""Pascal VOC 2012: JPEGImages/, SegmentationClass/ (palette PNGs, read as indices; 255 border ignored),
ImageSets/Segmentation/<split>.txt. SegmentationClassAug (and its train_aug list) is used when present."""

from __future__ import annotations

from pathlib import Path

from study.config import DataConfig
from study.data.common import DatasetError, FilePairDataset, label_table, require_dir

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor")


def _voc_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


PALETTE = _voc_palette(len(CLASSES))


def open_voc(cfg: DataConfig, split: str, train: bool) -> FilePairDataset:
    root = require_dir(Path(cfg.root), "VOC root")
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    images = require_dir(root / "JPEGImages", "VOC JPEGImages")
    masks = root / "SegmentationClassAug"
    if not masks.is_dir():
        masks = require_dir(root / "SegmentationClass", "VOC SegmentationClass")
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing}: split list not found")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    pairs = [(images / f"{i}.jpg", masks / f"{i}.png") for i in ids]
    table = label_table({i: i for i in range(len(CLASSES))}, ignore_raw=(255,), ignore_index=cfg.ignore_index)
    return FilePairDataset("voc", split, pairs, table, CLASSES, PALETTE, cfg, train, root)
