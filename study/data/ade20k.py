"""ADE20K scene parsing (ADEChallengeData2016): images/{training,validation}/*.jpg, annotations/.../*.png.

Label 0 ("other") is ignored; 1..150 become class ids 0..149.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

from study.config import DataConfig
from study.data.common import FilePairDataset, label_table, pair_by_stem, require_dir

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
PALETTE = tuple(tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.65, 0.95))
                for i in range(len(CLASSES)))
SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


def open_ade20k(cfg: DataConfig, split: str, train: bool) -> FilePairDataset:
    root = require_dir(Path(cfg.root), "ADE20K root")
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    folder = SPLITS.get(split, split)
    images = require_dir(root / "images" / folder, f"ADE20K '{split}' image")
    masks = require_dir(root / "annotations" / folder, f"ADE20K '{split}' annotation")
    table = label_table({v: v - 1 for v in range(1, 151)}, ignore_raw=(0,), ignore_index=cfg.ignore_index)
    return FilePairDataset("ade20k", split, pair_by_stem(images, masks), table, CLASSES, PALETTE, cfg, train, root)
