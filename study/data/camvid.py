"""CamVid in the SegNet layout: train/ trainannot/ val/ valannot/ test/ testannot/ (+ optional <split>.txt lists)."""

from __future__ import annotations

from pathlib import Path

from study.config import DataConfig
from study.data.common import DatasetError, FilePairDataset, label_table, pair_by_stem, require_dir

CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
           "Bicyclist")
PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
           (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


def open_camvid(cfg: DataConfig, split: str, train: bool) -> FilePairDataset:
    root = require_dir(Path(cfg.root), "CamVid root")
    listing = root / f"{split}.txt"
    if listing.is_file():
        pairs = []
        for n, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DatasetError(f"{listing}:{n}: expected 'image annotation', got {line!r}")
            pairs.append((_listed(root, parts[0]), _listed(root, parts[1])))
    else:
        images = require_dir(root / split, f"CamVid '{split}' image")
        masks = require_dir(root / f"{split}annot", f"CamVid '{split}' annotation")
        pairs = pair_by_stem(images, masks)
    table = label_table({i: i for i in range(11)}, ignore_raw=(11,), ignore_index=cfg.ignore_index)
    return FilePairDataset("camvid", split, pairs, table, CLASSES, PALETTE, cfg, train, root)


def _listed(root: Path, entry: str) -> Path:
    """A list-file path under `root`; SegNet's own lists (/SegNet/CamVid/train/x.png) resolve by folder/name."""
    path = root / entry.lstrip("/")
    if not path.is_file():
        short = root / Path(entry).parent.name / Path(entry).name
        if short.is_file():
            return short
    return path
