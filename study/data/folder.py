"""A generic folder: <root>/<split>/images/*, <root>/<split>/masks/<same stem>.png, optional <root>/classes.txt.

Masks hold class ids 0..K-1 and 255 for ignore. K comes from classes.txt (one name per line); without it, from
the largest id found in the masks of every split (names class_0..class_{K-1}), so train and val agree on K.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from study.config import DataConfig
from study.data.common import DatasetError, FilePairDataset, label_table, pair_by_stem, require_dir


def open_folder(cfg: DataConfig, split: str, train: bool) -> FilePairDataset:
    root = require_dir(Path(cfg.root), "data root")
    base = root / split if (root / split).is_dir() else root
    pairs = pair_by_stem(require_dir(base / "images", "images"), require_dir(base / "masks", "masks"))
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"{names_file}: no class names")
    else:  # every split's masks, so that train and val agree on K when a class is missing from one of them
        masks = [m for _, m in pairs] if base == root else \
            sorted(m for d in root.iterdir() if (d / "masks").is_dir() for m in (d / "masks").glob("*.png"))
        top = max((_largest_id(m) for m in masks), default=0)
        names = [f"class_{i}" for i in range(top + 1)]
    palette = [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.65, 0.95))
               for i in range(len(names))]
    table = label_table({i: i for i in range(len(names))}, ignore_raw=(255,), ignore_index=cfg.ignore_index)
    return FilePairDataset("folder", split, pairs, table, names, palette, cfg, train, root)


def _largest_id(mask_path: Path) -> int:
    try:
        values = np.asarray(Image.open(mask_path))
    except OSError as e:
        raise DatasetError(f"{mask_path}: unreadable mask ({e})") from None
    return int(values[values != 255].max(initial=0))
