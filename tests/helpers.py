"""Stand-ins the runner tests share: a run_one that writes a record without training."""

import hashlib
import time

from study.config import config_hash
from study.record import RunRecord, run_dir, write_record


def fake_run(cfg, on_eval=None, sleep=0.0):
    """Writes a record like run_one: mIoU is a fixed function of (variant, seed); lr > 1 fails."""
    time.sleep(sleep)
    digest = hashlib.sha256(f"{cfg.run.variant}/{cfg.run.seed}".encode()).digest()
    miou = 0.5 + digest[0] / 1000
    failed = cfg.train.lr > 1
    if on_eval is not None and not failed:
        if on_eval(cfg.train.steps, {"miou": miou}):
            rec = stand_in_record(cfg, "pruned", {})
            write_record(rec, run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed))
            return rec
    rec = stand_in_record(cfg, "failed" if failed else "completed",
                  {} if failed else {"miou": miou, "pixel_acc": 0.9, "miou_present": miou, "mean_acc": 0.6})
    write_record(rec, run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed))
    return rec


def stand_in_record(cfg, status, metrics):
    return RunRecord(id=f"{cfg.run.variant}__s{cfg.run.seed}", study=cfg.run.study, variant=cfg.run.variant,
                     seed=cfg.run.seed, config=cfg.to_dict(), config_hash=config_hash(cfg), status=status,
                     error="non-finite loss at step 1" if status == "failed" else "", metrics=metrics)


def slow_fake_run(cfg, on_eval=None):
    return fake_run(cfg, on_eval, sleep=0.3)
