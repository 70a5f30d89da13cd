"""LabelMeFacade (Froehlich, Rodner and Denzler, ICPR 2010): 945 street and facade photographs from LabelMe with
pixel labels, in the layout of its public repository (cvjena/labelmefacade): images/<name>.jpg, labels/<name>.png
(colour-coded RGB(A)), train.txt (100 images) and test.txt (845), each line `images/<name>.jpg`.

Labels: 8 classes by colour; black ("various") is void and ignored. The data set has no val split: `val` is
every fifth image of train.txt in its order (20 images), `train` the other 80, `trainval` all 100, `test` the
official 845. Research and non-commercial use only (the data set's README); cite the paper when you publish.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from study.config import DataConfig
from study.data.common import DatasetError, FilePairDataset, label_table, require_dir

CLASSES = ("building", "car", "door", "pavement", "road", "sky", "vegetation", "window")
PALETTE = ((128, 0, 0), (128, 0, 128), (128, 128, 0), (128, 128, 128), (128, 64, 0), (0, 128, 128), (0, 128, 0),
           (0, 0, 128))
VOID = (0, 0, 0)  # "various"
SPLITS = ("train", "val", "trainval", "test")
VAL_EVERY = 5  # val: entries 5, 10, ..., 100 of train.txt (1-based)


def _code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# raw value of each colour: 0 void, 1..8 the classes in order
RAW_OF_COLOUR = {code: raw for raw, code in enumerate(_code(np.array([VOID, *PALETTE])).tolist())}


class ColourMaskDataset(FilePairDataset):
    """File pairs whose masks are RGB(A) colour codes: each colour becomes its raw value, then the label table."""

    def raw_labels(self, mask: Image.Image, mask_path: Path) -> np.ndarray:
        colours, inverse = np.unique(_code(np.asarray(mask.convert("RGB"))), return_inverse=True)
        unknown = [c for c in colours.tolist() if c not in RAW_OF_COLOUR]
        if unknown:
            names = ", ".join(f"{c >> 16}:{(c >> 8) & 255}:{c & 255}" for c in unknown[:5])
            raise DatasetError(f"{mask_path}: colour(s) {names} (R:G:B) are not LabelMeFacade label colours")
        raw = np.array([RAW_OF_COLOUR[c] for c in colours.tolist()], np.uint8)
        return raw[inverse].reshape(mask.size[1], mask.size[0])


def split_names(root: Path, split: str) -> list[str]:
    """The image names (without folder and suffix) of one split, from the official lists and the val rule."""
    if split not in SPLITS:
        raise DatasetError(f"{root}: LabelMeFacade has no split '{split}' (splits: {', '.join(SPLITS)})")
    listing = root / ("test.txt" if split == "test" else "train.txt")
    if not listing.is_file():
        raise DatasetError(f"{listing}: split list not found")
    names = [Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()]
    if split == "val":
        return names[VAL_EVERY - 1::VAL_EVERY]
    if split == "train":
        return [n for i, n in enumerate(names, 1) if i % VAL_EVERY]
    return names


def open_labelmefacade(cfg: DataConfig, split: str, train: bool) -> ColourMaskDataset:
    root = require_dir(Path(cfg.root), "LabelMeFacade root")
    images = require_dir(root / "images", "LabelMeFacade images")
    labels = require_dir(root / "labels", "LabelMeFacade labels")
    pairs = [(images / f"{n}.jpg", labels / f"{n}.png") for n in split_names(root, split)]
    table = label_table({i + 1: i for i in range(len(CLASSES))}, ignore_raw=(0,), ignore_index=cfg.ignore_index)
    return ColourMaskDataset("labelmefacade", split, pairs, table, CLASSES, PALETTE, cfg, train, root)
