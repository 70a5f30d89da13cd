"""Data-pipeline benchmark: samples/s of a training split with its augmentation through a DataLoader.

`python -m study.throughput.data [--root data/camvid] [--crop 352] [--workers 2] [--seconds 20]`
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.utils.data import DataLoader

from study.config import DataConfig
from study.data.build import build_dataset, seed_worker
from study.data.common import DatasetError


def measure(cfg: DataConfig, batch_size: int, seconds: float) -> dict:
    """Iterate shuffled (index, seed) batches for `seconds`, timed from the first batch (after worker start-up)."""
    dataset = build_dataset(cfg, cfg.train_split, train=True)

    def keys(epoch: int) -> list[tuple[int, int]]:
        g = torch.Generator().manual_seed(epoch)
        return [(int(i), epoch * 100_000 + int(i)) for i in torch.randperm(len(dataset), generator=g)]

    epochs = [k for epoch in range(100) for k in keys(epoch)]  # more than any sensible duration needs
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=cfg.workers, worker_init_fn=seed_worker,
                        sampler=epochs, drop_last=True)
    samples, start = 0, None
    for images, _ in loader:
        if start is None:
            start = time.perf_counter()  # the first batch pays for worker start-up
            continue
        samples += images.shape[0]
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    return {"samples": samples, "seconds": elapsed, "samples_per_s": samples / elapsed, "crop": list(cfg.crop_size),
            "workers": cfg.workers, "augment": list(cfg.augment), "images": len(dataset)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.throughput.data", description=__doc__)
    p.add_argument("--name", default="camvid")
    p.add_argument("--root", default="data/camvid")
    p.add_argument("--crop", type=int, default=352)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--no-cache", action="store_true", help="decode every image from disk every time")
    args = p.parse_args(argv)
    cfg = DataConfig(name=args.name, root=args.root, crop_size=(args.crop, args.crop), workers=args.workers,
                     cache=not args.no_cache)
    try:
        r = measure(cfg, args.batch, args.seconds)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.name} train pipeline ({r['images']} images, augment {'+'.join(r['augment'])}, crop {args.crop}, "
          f"{args.workers} workers, batch {args.batch}, cache {not args.no_cache}): {r['samples_per_s']:.1f} samples/s "
          f"({r['samples']} samples in {r['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
