"""The frozen-feature cache: a frozen backbone's output maps for every image (and mirrored copy) of a split,
computed once and stored as fp16 arrays that runs memory-map.

A cache lives in `<data.feature_cache_dir or run.out_dir/_features>/<key>/`, where the key is a digest of
everything that determines the maps: the weights file's sha256, backbone, out indices, output stride, BN mode, a
fingerprint of the data files (study.data.fingerprint: paths, sizes, sha256 of contents), resize, normalisation, the copies stored, the
extraction precision, the torch and timm versions, and this module's format version. Every variant, seed and worker
of a study, and any other study with the same key, reads the same folder.

Building: one process at a time per key (an exclusive file lock; others wait and then read what it built). Each
split is written sequentially into `<key>.partial/` with a progress file after every chunk, so a killed build
resumes where it stopped; the manifest is written last and the folder renamed into place, so a reader sees a
complete cache or none. A cache whose manifest is missing, unreadable, of another key, or whose files have the
wrong size is moved aside and rebuilt, never read. A full or unwritable disk raises OSError (a one-line error for
the user); what was half-written is never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image

from study.atomic import atomic_write_text, file_lock
from study.config import Config
from study.data.build import build_dataset
from study.data.common import SegDataset
from study.data.fingerprint import split_fingerprint
from study.data.transforms import resize_pair, to_tensors
from study.models.backbone import RANDOM, build_backbone, weights_digest

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 8  # images per forward pass and per progress save


class CacheError(ValueError):
    """A feature cache cannot be built as asked; the message names the field or file."""


@dataclass(frozen=True)
class SplitArrays:
    """One split of a cache: maps (n, copies, C, h, w) fp16, labels uint8, image names.

    Labels of one size are stored as (n, H, W); an evaluation split whose labels differ in size (photographs of
    several shapes, each scored at its own) stores them flattened one after another, `label_sizes` giving each
    image's (H, W).
    """

    features: np.ndarray
    labels: np.ndarray
    ids: list[str]
    label_sizes: list[tuple[int, int]] | None = None
    label_starts: list[int] | None = None  # with label_sizes: where each image's label begins in `labels`

    def label(self, index: int) -> np.ndarray:
        """Image `index`'s label map (H, W)."""
        if self.label_sizes is None or self.label_starts is None:
            return np.asarray(self.labels[index])
        start, (h, w) = self.label_starts[index], self.label_sizes[index]
        return np.asarray(self.labels[start: start + h * w]).reshape(h, w)


def cache_key(cfg: Config, split: str) -> tuple[str, dict[str, Any]]:
    """(24-hex key, the fields it digests) for the maps `cfg` computes on `split`."""
    m, d = cfg.model, cfg.data
    fields = {
        "format": FORMAT_VERSION,
        "weights": weights_digest(m),
        "backbone": m.backbone, "out_indices": list(m.out_indices), "output_stride": m.output_stride,
        "layers": m.layers, "channels": m.channels, "stem_width": m.stem_width, "stem_type": m.stem_type,
        "bn": "frozen (eval statistics)",
        "data": d.name,
        "split": split, "files": split_fingerprint(build_dataset(d, split, train=False)),
        "labels": "at the image's size" if split == d.train_split else "at their own size",
        "resize": list(d.resize) if d.resize else None, "mean": list(d.mean), "std": list(d.std),
        "copies": copies(cfg, split),
        "precision": "float32 extraction, float16 storage",
        "torch": torch.__version__.split("+")[0], "timm": timm.__version__,
    }
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:24], fields


def copies(cfg: Config, split: str) -> list[str]:
    """The copies stored per image: the image itself, and on the training split with data.feature_flip its
    mirror."""
    return ["identity", "hflip"] if split == cfg.data.train_split and cfg.data.feature_flip else ["identity"]


def cache_root(cfg: Config) -> Path:
    return Path(cfg.data.feature_cache_dir or Path(cfg.run.out_dir) / "_features")


def ensure_cache(cfg: Config, split: str, *, log: Callable[[str], None] = print) -> tuple[Path, float]:
    """The folder of the complete cache of `split`'s maps under `cfg`, built here if needed; and the seconds spent
    building (0 when it was there)."""
    key, fields = cache_key(cfg, split)
    root = cache_root(cfg)
    folder = root / key
    if valid(folder, key):
        return folder, 0.0
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f"{key}.lock"):
        if valid(folder, key):  # built by another worker while this one waited
            return folder, 0.0
        if folder.exists():
            aside = root / f"{key}.invalid-{int(time.time())}"
            log(f"feature cache {folder} is incomplete or does not match its key: moved to {aside.name}, rebuilding")
            folder.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        t0 = time.perf_counter()
        _build(cfg, split, key, fields, root, log)
        return folder, time.perf_counter() - t0


def valid(folder: Path, key: str) -> bool:
    """A complete cache of `key`: its manifest names the key and every array file has the size it states."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("key") != key:
            return False
        for name in ("features", "labels"):
            f = manifest[name]
            if (folder / f["file"]).stat().st_size != f["bytes"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def open_split(folder: Path) -> tuple[SplitArrays, dict[str, Any]]:
    """The split of a complete cache, memory-mapped read-only, and its manifest."""
    manifest = json.loads((folder / MANIFEST).read_text())
    features = np.load(folder / manifest["features"]["file"], mmap_mode="r")
    labels = np.load(folder / manifest["labels"]["file"], mmap_mode="r")
    sizes = [tuple(s) for s in manifest["label_sizes"]] if "label_sizes" in manifest else None
    starts = np.concatenate([[0], np.cumsum([h * w for h, w in sizes])]).tolist() if sizes else None
    return SplitArrays(features, labels, list(manifest["ids"]), sizes, starts), manifest


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build(cfg: Config, split: str, key: str, fields: dict[str, Any], root: Path,
           log: Callable[[str], None]) -> None:
    partial = root / f"{key}.partial"
    partial.mkdir(exist_ok=True)
    atomic_write_text(partial / "key.json", json.dumps(fields, indent=1, sort_keys=True, default=list) + "\n")
    backbone = build_backbone(cfg.model).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    channels = backbone.feature_info.channels()
    with _threads(os.cpu_count() or 1), torch.no_grad():
        entry, names = _build_split(cfg, split, backbone, channels, partial, log)
    manifest = {"key": key, "fields": fields, "channels": channels, "stride": cfg.model.output_stride,
                "class_names": list(names.class_names), "palette": [list(c) for c in names.palette], **entry, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}
    atomic_write_text(partial / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, default=list) + "\n")
    os.replace(partial, root / key)


def _image_and_label(dataset: SegDataset, index: int, train: bool) -> tuple[torch.Tensor, np.ndarray]:
    """The normalised image at data.resize, and its label: at the image's size on the training split (as the
    image-space training path resizes both), at the label's own size elsewhere (scored there)."""
    image, mask = dataset.load(index)
    if dataset.cfg.resize is not None:
        resized, resized_mask = resize_pair(image, mask, dataset.cfg.resize)
        image, mask = resized, (resized_mask if train else mask)
    x, y = to_tensors(image, mask, dataset.cfg.mean, dataset.cfg.std)
    return x, y.numpy()


def _label_sizes(dataset: SegDataset, train: bool, first: tuple[int, int]) -> list[tuple[int, int]]:
    """Each image's label size as stored: the training split's are resized with the image (all `first`); an
    evaluation split's are the labels' own, read from the file headers (or the labels) without decoding images."""
    if train:
        return [first] * len(dataset)
    pairs = getattr(dataset, "pairs", None)
    if pairs is not None:
        sizes = []
        for _, mask_path in pairs:
            with Image.open(mask_path) as mask:
                sizes.append((mask.size[1], mask.size[0]))
        return sizes
    return [tuple(np.asarray(dataset.load(i)[1]).shape) for i in range(len(dataset))]


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The .npy header of an array of `shape` (the data follows it, written chunk by chunk)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _feature_block(backbone: torch.nn.Module, xs: torch.Tensor, kinds: list[str], size: tuple[int, int]
                   ) -> np.ndarray:
    """The stored maps of a chunk of images, (images, copies, channels, h, w) in float16: each copy (the image or its
    mirror) through the backbone, its stages concatenated on channels (they must share the map size `size`)."""
    maps = []
    for kind in kinds:
        inputs = xs.flip(-1) if kind == "hflip" else xs
        feats = backbone(inputs)
        stacked = torch.cat([f.float() for f in feats], dim=1)
        if tuple(stacked.shape[-2:]) != size:
            raise CacheError(f"model.out_indices: the stored stages must share the output stride's size "
                             f"{size}, got {tuple(stacked.shape[-2:])}")
        maps.append(stacked)
    return np.ascontiguousarray(torch.stack(maps, dim=1).to(torch.float16).numpy())


def _build_split(cfg: Config, split: str, backbone: torch.nn.Module, channels: list[int], partial: Path,
                 log: Callable[[str], None]) -> tuple[dict[str, Any], SegDataset]:
    train = split == cfg.data.train_split
    dataset = build_dataset(cfg.data, split, train=False)
    n, kinds = len(dataset), copies(cfg, split)
    x0, y0 = _image_and_label(dataset, 0, train)
    stride = cfg.model.output_stride
    h, w = x0.shape[-2:]
    if h % stride or w % stride:
        raise CacheError(f"data.resize: frozen features need an image size divisible by model.output_stride "
                         f"{stride} (got {h}x{w})")
    fshape = (n, len(kinds), sum(channels), h // stride, w // stride)
    sizes = _label_sizes(dataset, train, tuple(y0.shape))
    ragged = len(set(sizes)) > 1
    label_start = np.concatenate([[0], np.cumsum([a * b for a, b in sizes])]).astype(np.int64)  # uint8: bytes
    lshape = (int(label_start[-1]),) if ragged else (n, *y0.shape)
    files = {"features": ("features.npy", fshape, np.float16), "labels": ("labels.npy", lshape, np.uint8)}
    feature_bytes = int(np.prod(fshape[1:])) * np.dtype(np.float16).itemsize

    def offset(kind: str, images: int) -> int:  # bytes of data before image `images`
        return images * feature_bytes if kind == "features" else int(label_start[images])

    progress_file = partial / "progress.json"
    done = 0
    if progress_file.exists():
        state = json.loads(progress_file.read_text())
        done = state["done"] if state.get("shapes") == [list(fshape), list(lshape)] else 0
    handles = {}
    try:
        for kind, (name, shape, dt) in files.items():
            header = _npy_header(shape, dt)
            path = partial / name
            f = open(path, "r+b" if done and path.exists() else "wb")
            f.seek(0)
            f.write(header)
            f.truncate(len(header) + offset(kind, done))
            f.seek(len(header) + offset(kind, done))
            handles[kind] = f
        if done:
            log(f"feature cache: resuming split {split} at image {done}/{n}")
        t0 = time.perf_counter()
        ids = [dataset.image_id(i) for i in range(n)]
        for start in range(done, n, CHUNK):
            idx = range(start, min(start + CHUNK, n))
            pairs = [_image_and_label(dataset, i, train) for i in idx]
            xs = torch.stack([p[0] for p in pairs])
            if any(p[0].shape != x0.shape for p in pairs):
                raise CacheError(f"data.resize: frozen features need one image size per split; "
                                 f"{dataset.name} {split} mixes sizes (set data.resize)")
            if any(p[1].shape != sizes[i] for i, p in zip(idx, pairs, strict=True)):
                raise CacheError(f"{dataset.name} {split}: a label's size changed while the cache was built")
            handles["features"].write(_feature_block(backbone, xs, kinds, fshape[-2:]).tobytes())
            handles["labels"].write(b"".join(p[1].astype(np.uint8).tobytes() for p in pairs))
            for f in handles.values():
                f.flush()
                os.fsync(f.fileno())
            done = idx[-1] + 1
            atomic_write_text(progress_file, json.dumps({"done": done, "shapes": [list(fshape), list(lshape)]}))
        log(f"feature cache: split {split} ({n} images x {len(kinds)} copies) in {time.perf_counter() - t0:.0f}s")
    finally:
        for f in handles.values():
            f.close()
    progress_file.unlink(missing_ok=True)
    entry = {"images": n, "copies": kinds, "ids": ids, "image_size": [h, w], "label_size": list(y0.shape)}
    if ragged:
        entry["label_sizes"] = [list(s) for s in sizes]
    for kind, (name, shape, dt) in files.items():
        entry[kind] = {"file": name, "shape": list(shape), "dtype": np.dtype(dt).name,
                       "bytes": len(_npy_header(shape, dt)) + offset(kind, n)}
    return entry, dataset


def describe(manifest: dict[str, Any]) -> str:
    """One line for records and reports: what the cache holds and its key."""
    f = manifest["fields"]
    kind = "frozen random-initialised features" if f["weights"] == RANDOM else f"frozen ImageNet features ({f['weights']})"
    return f"{kind}, {f['backbone']} stages {f['out_indices']} at stride {f['output_stride']}"


__all__ = ["CacheError", "cache_key", "copies", "describe",
           "ensure_cache", "open_split", "valid"]
