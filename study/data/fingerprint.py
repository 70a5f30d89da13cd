"""What data a run saw, as one digest: for data sets read from files, the split's file list with sizes and content
digests (paths relative to the data root, so a moved copy matches); for the generated probe, its generator version
and parameters. Computed once per process and split."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from study.config import DataConfig
from study.data.build import build_dataset
from study.data.common import SegDataset
from study.data.synthetic import GENERATOR_VERSION

_memo: dict[tuple, str] = {}

# probe fields that decide its scenes (the rest, e.g. resize or augmentation, are in the config hash already)
PROBE_FIELDS = ("image_size", "train_size", "val_size", "data_seed", "probe_extras", "probe_kind")


def split_fingerprint(dataset: SegDataset) -> str:
    """sha256 (hex) of one opened split: its files, or the probe's generator and parameters."""
    pairs = getattr(dataset, "pairs", None)
    if pairs is None:
        params = {k: getattr(dataset.cfg, k) for k in PROBE_FIELDS}
        blob = json.dumps({"generator": GENERATOR_VERSION, "split": dataset.split, **params}, sort_keys=True,
                          default=list)
        return hashlib.sha256(blob.encode()).hexdigest()
    root = Path(dataset.cfg.root)
    memo = (dataset.name, dataset.split, str(root.resolve()), tuple((str(a), str(b)) for a, b in pairs))
    if memo not in _memo:
        h = hashlib.sha256()
        for image, mask in pairs:
            for path in (image, mask):
                data = path.read_bytes()
                h.update(f"{os.path.relpath(path, root)}\0{len(data)}\0".encode())
                h.update(hashlib.sha256(data).digest())
        _memo[memo] = h.hexdigest()
    return _memo[memo]


def data_fingerprint(cfg: DataConfig, splits: Sequence[str]) -> str:
    """"<name>:<16 hex>" over the splits a run reads (each opened as for evaluation, so nothing is augmented)."""
    h = hashlib.sha256()
    for split in splits:
        h.update(f"{split}\0{split_fingerprint(build_dataset(cfg, split, train=False))}\0".encode())
    return f"{cfg.name}:{h.hexdigest()[:16]}"

