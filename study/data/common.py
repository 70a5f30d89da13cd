"""The dataset type every loader returns, and the shared file-pair reader with its up-front checks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from study.config import DataConfig
from study.data.transforms import augment_pair, mean_rgb, resize_pair, to_tensors

INVALID = 254  # label-table entry for raw values that no class or ignore rule covers


class DatasetError(ValueError):
    """A data set cannot be read as asked; the message names the file or folder."""


class SegDataset(Dataset):
    """(image float (3,H,W) normalised with cfg.mean / cfg.std, mask int64 (H,W)) pairs with class names and a
    palette.

    Subclasses implement `load(index) -> (PIL RGB image, PIL "L" mask of class ids / ignore)`. Training splits
    apply the optional `cfg.resize` to both, then `cfg.augment` and a padded random crop. Evaluation splits resize
    the image only: the mask stays at its original size, so scores are at the label's own resolution.
    """

    def __init__(self, name: str, split: str, class_names: Sequence[str], palette: Sequence[Sequence[int]],
                 cfg: DataConfig, train: bool):
        self.name, self.split, self.cfg, self.train = name, split, cfg, train
        self.class_names = tuple(class_names)
        self.palette = tuple(tuple(int(c) for c in rgb) for rgb in palette)
        self.num_classes = len(self.class_names)
        self.ignore_index = cfg.ignore_index

    def load(self, index: int) -> tuple[Image.Image, Image.Image]:
        raise NotImplementedError

    def image_id(self, index: int) -> str:
        """A name for item `index` in reports (the image-level bootstrap groups images by it)."""
        return str(index)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`key` is an index, or (index, augmentation seed) as the training sampler yields it."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.load(index)
        if self.cfg.resize is not None:
            if self.train:
                image, mask = resize_pair(image, mask, self.cfg.resize)
            else:
                image, _ = resize_pair(image, mask, self.cfg.resize)
        if self.train:
            c = self.cfg
            rng = random.Random(seed) if seed is not None else random  # module functions: global state
            image, mask = augment_pair(image, mask, augment=c.augment, scale_range=c.scale_range,
                                       rotate_degrees=c.rotate_degrees, crop_hw=c.crop_size,
                                       ignore_index=c.ignore_index, rng=rng, fill=mean_rgb(c.mean))
        return to_tensors(image, mask, self.cfg.mean, self.cfg.std)


def label_table(mapping: dict[int, int], ignore_raw: Sequence[int] = (), ignore_index: int = 255) -> np.ndarray:
    """A 256-entry lookup from raw mask values to class ids; unmapped values become INVALID."""
    table = np.full(256, INVALID, dtype=np.uint8)
    for raw, cls in mapping.items():
        table[raw] = cls
    for raw in ignore_raw:
        table[raw] = ignore_index
    return table


class FilePairDataset(SegDataset):
    """Image/mask file pairs, raw mask values mapped through a label table; checked when opened."""

    def __init__(self, name: str, split: str, pairs: Sequence[tuple[Path, Path]], table: np.ndarray,
                 class_names: Sequence[str], palette: Sequence[Sequence[int]], cfg: DataConfig, train: bool,
                 where: Path):
        super().__init__(name, split, class_names, palette, cfg, train)
        if not pairs:
            raise DatasetError(f"{where}: split '{split}' of {name} is empty")
        for image_path, mask_path in pairs:  # fast scan: existence and sizes from the headers
            for path in (image_path, mask_path):
                if not path.is_file():
                    raise DatasetError(f"{path}: file not found ({name} {split})")
            image_size, mask_size = _header_size(image_path), _header_size(mask_path)
            if image_size != mask_size:
                raise DatasetError(f"{mask_path}: mask size {mask_size} != image size {image_size} "
                                   f"({image_path.name})")
        self.pairs = list(pairs)
        self.table = table
        self._cache: dict[int, tuple[Image.Image, Image.Image]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def image_id(self, index: int) -> str:
        return self.pairs[index][0].stem

    def load(self, index: int) -> tuple[Image.Image, Image.Image]:
        if index in self._cache:
            return self._cache[index]
        pair = self._read(index)
        if self.cfg.cache:
            self._cache[index] = pair
        return pair

    def raw_labels(self, mask: Image.Image, mask_path: Path) -> np.ndarray:
        """The mask's raw values (H, W) in 0..255, before the label table; this reader: a single-channel map."""
        raw = np.asarray(mask)
        if raw.ndim != 2:
            raise DatasetError(f"{mask_path}: expected a single-channel label map, got shape {raw.shape}")
        if raw.max(initial=0) > 255:
            raise DatasetError(f"{mask_path}: label value {int(raw.max())} outside the {self.num_classes} classes")
        return raw

    def check_labels(self) -> None:
        """Read every mask once: a value no class or ignore rule covers raises DatasetError naming the file (what
        a run would meet only when it reaches that image)."""
        for _, mask_path in self.pairs:
            try:
                raw = self.raw_labels(Image.open(mask_path), mask_path)
            except OSError as e:
                raise DatasetError(f"{mask_path}: unreadable mask ({e})") from None
            self._check_mapped(self.table[raw.astype(np.intp)], raw, mask_path)

    def _check_mapped(self, mapped: np.ndarray, raw: np.ndarray, mask_path: Path) -> None:
        if (mapped == INVALID).any():
            bad = np.unique(raw[mapped == INVALID]).tolist()
            raise DatasetError(f"{mask_path}: label value(s) {bad[:5]} outside the {self.num_classes} classes "
                               f"and not ignored")

    def _read(self, index: int) -> tuple[Image.Image, Image.Image]:
        image_path, mask_path = self.pairs[index]
        try:
            image = Image.open(image_path).convert("RGB")
        except OSError as e:
            raise DatasetError(f"{image_path}: unreadable image ({e})") from None
        try:
            raw = self.raw_labels(Image.open(mask_path), mask_path)
        except OSError as e:
            raise DatasetError(f"{mask_path}: unreadable mask ({e})") from None
        mapped = self.table[raw.astype(np.intp)]
        self._check_mapped(mapped, raw, mask_path)
        return image, Image.fromarray(mapped, mode="L")


def _header_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from None


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found")
    return path


def pair_by_stem(images: Path, masks: Path, image_suffix: str = "", mask_suffix: str = "",
                 mask_ext: str = ".png") -> list[tuple[Path, Path]]:
    """Every image in `images` with the mask of the same stem in `masks`; a missing mask is an error."""
    pairs = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        stem = image.stem.removesuffix(image_suffix) if image_suffix else image.stem
        mask = masks / f"{stem}{mask_suffix}{mask_ext}"
        if not mask.is_file():
            raise DatasetError(f"{mask}: mask for {image.name} not found")
        pairs.append((image, mask))
    return pairs
