"""The one wiring point of a run: build what it needs (threads, device, seed, data, model), then train, evaluate
and benchmark it (`run_one`: one run at a time), evaluate a saved model (`evaluate_model_file`) or time a config
(`bench_config`).

`model.pt` is written and read here only.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from study.atomic import atomic_write_text, atomic_write_with, disk_error
from study.config import Config, ConfigError, config_hash
from study.config_files import apply_overrides, from_dict
from study.data.build import build_dataset, class_names
from study.data.fingerprint import data_fingerprint
from study.device import resolve, widest_conv
from study.env import pick_device, provenance, seed_everything
from study.evaluate.predict import evaluate
from study.features.cache import MANIFEST, describe, ensure_cache
from study.features.dataset import FeatureDataset
from study.features.head import FrozenFeatureHead
from study.models.backbone import pretrained_source
from study.models.build import build_model, redraw_new_layers
from study.models.pretrained import check_normalisation
from study.record import (
    RunRecord,
    completed_record,
    pack_counts,
    run_dir,
    run_id,
    training_check,
    write_record,
)
from study.throughput.bench import benchmark
from study.train import distributed
from study.train.checkpoint import CHECKPOINT, rng_state, set_rng_state
from study.train.distributed import World
from study.train.loop import NonFiniteLoss, TrainResult, train

MODEL_FILE = "model.pt"
HEADLINE = ("miou", "miou_present", "pixel_acc", "mean_acc", "mean_acc_present", "per_class_iou")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def setup(cfg: Config, world: World | None = None) -> torch.device:
    """Torch threads, the run's device (cuda:<local rank> when GPUs are there) and every seed."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = pick_device(cfg.run.device, (world or World()).local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    return device


def save_model(path: Path, model: torch.nn.Module, cfg: Config, dataset) -> None:
    """model.pt: the weights with the resolved config and the class names and colours they predict."""
    state = {"model": model.state_dict(), "config": cfg.to_dict(), "class_names": list(dataset.class_names),
             "palette": [list(c) for c in dataset.palette]}
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def load_model(path: Path) -> dict[str, Any]:
    """A model.pt as data (tensors and plain values only: a pickled payload is refused, never run)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or not {"model", "config"} <= set(saved):
            raise ValueError("no model or config entry")
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for foreign or unsafe files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a model file written by `python -m study run` ({reason[:200]})") from None
    return saved


@dataclass
class _Run:
    """What one (variant, seed) needs between building and its record: data, model, where it writes, how it says."""

    cfg: Config
    folder: Path
    chash: str
    device: torch.device
    world: World
    say: Callable[[str], None]
    train_set: Any
    val_set: Any
    model: torch.nn.Module
    trainee: torch.nn.Module  # what trains: the whole network, or (frozen features) its pyramid and heads
    net: torch.nn.Module  # the trainee as the loop runs it (DDP-wrapped, compiled)
    prov: dict[str, Any]
    base: dict[str, Any]

    def evaluate(self, m: torch.nn.Module, qualitative: bool = False) -> dict[str, Any]:
        """The run's metrics on its validation split (rank 0 computes, every rank gets them)."""
        metrics = None
        if self.world.rank == 0:
            frozen = self.cfg.model.freeze_backbone
            q_dir = self.folder / "qualitative" if qualitative and self.cfg.eval.qualitative and not frozen else None
            metrics = evaluate(m, self.val_set, cfg=self.cfg.eval, device=self.device, qualitative_dir=q_dir,
                               workers=self.cfg.data.workers)
        if dist.is_initialized():
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics


def run_one(cfg: Config, *, on_eval: Callable[[int, dict], bool] | None = None,
            log: Callable[[str], None] | None = None) -> RunRecord:
    """Train, evaluate and benchmark one (variant, seed); write and return its run record.

    A completed record with the same config hash is returned as it is; a checkpoint of the same config is resumed;
    a checkpoint of another config is refused (ConfigError). Training failures end as status "failed" with the
    reason in the record; `on_eval(step, metrics)` returning True ends the run as "pruned".
    """
    folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
    if (done := completed_record(folder, config_hash(cfg))) is not None:
        return done
    run = _prepare(cfg, log)
    run.say(f"training {cfg.train.steps} steps on {run.device} ({len(run.train_set)} train / "
            f"{len(run.val_set)} val images)")
    return _conclude(run, lambda: train(run.net, run.train_set, cfg=cfg, device=run.device, folder=run.folder,
                                        config_hash=run.chash, evaluate=run.evaluate, on_eval=on_eval,
                                        world=run.world, log=run.say), on_eval)


def _prepare(cfg: Config, log: Callable[[str], None] | None) -> _Run:
    """Seed, then build the run's data and model in the order a run always has (so a seed gives one network)."""
    check_normalisation(cfg.model, cfg.data)
    world = distributed.init_from_env()
    device = setup(cfg, world)
    folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
    prefix = f"[{run_id(cfg.run.variant, cfg.run.seed)}] "
    say = log or (lambda line: print(prefix + line, flush=True))
    if world.rank != 0:
        say = lambda line: None  # noqa: E731

    frozen = cfg.model.freeze_backbone
    weights, features = pretrained_source(cfg.model), {}
    if frozen:
        if world.distributed:
            raise ConfigError("model.freeze_backbone: frozen-feature runs train in one process (no --gpus-per-cell)")
        state = rng_state()  # building a cache draws random numbers; the run's draws must not depend on who built it
        (train_cache, t_train), (val_cache, t_val) = (ensure_cache(cfg, split, log=say)
                                                      for split in (cfg.data.train_split, cfg.data.val_split))
        set_rng_state(state)
        train_set = FeatureDataset(train_cache, cfg, cfg.data.train_split, train=True)
        val_set = FeatureDataset(val_cache, cfg, cfg.data.val_split, train=False)
        manifest = json.loads((train_cache / MANIFEST).read_text())
        weights = describe(manifest)
        features = {"train_key": train_cache.name, "val_key": val_cache.name,
                    "built_here_seconds": round(t_train + t_val, 1), "copies": manifest["copies"],
                    "crop": cfg.data.feature_crop}
    else:
        train_set = build_dataset(cfg.data, cfg.data.train_split)
        val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = build_model(cfg.model, train_set.num_classes)
    redraw_new_layers(model, cfg.run.seed, cfg.run.twin)
    model = model.to(device)
    trainee: torch.nn.Module = FrozenFeatureHead(model, cfg.model.output_stride) if frozen else model
    speed = resolve(device, cfg.train, widest_conv(trainee))
    if speed.channels_last:
        trainee.to(memory_format=torch.channels_last)
    bn = "BatchNorm"
    net: torch.nn.Module = trainee
    if world.distributed:
        net, bn = distributed.wrap(model, device, cfg.train.sync_bn)
    if cfg.train.compile:
        net = torch.compile(net)

    folder.mkdir(parents=True, exist_ok=True)
    prov = {**provenance(device), "world_size": world.size, "eval_mode": cfg.eval.mode,
            "batch_size": cfg.train.batch_size, "batch_per_rank": cfg.train.batch_size // world.size, "bn": bn,
            "miou_convention": "mean over all classes, absent classes count 0 (official PSPNet)",
            "train_size": len(train_set), "val_size": len(val_set), "weights": weights,
            "settings": speed.as_dict(),
            "data_fingerprint": data_fingerprint(cfg.data, (cfg.data.train_split, cfg.data.val_split))}
    if features:
        prov["feature_cache"] = features
    chash = config_hash(cfg)
    base = dict(id=run_id(cfg.run.variant, cfg.run.seed), study=cfg.run.study, variant=cfg.run.variant,
                seed=cfg.run.seed, config=cfg.to_dict(), config_hash=chash, provenance=prov, started_at=_now())
    return _Run(cfg=cfg, folder=folder, chash=chash, device=device, world=world, say=say, train_set=train_set,
                val_set=val_set, model=model, trainee=trainee, net=net, prov=prov, base=base)


def _conclude(run: _Run, trained: Callable[[], TrainResult], on_eval: Callable[[int, dict], bool] | None
              ) -> RunRecord:
    """Train (`trained()` returns the run's TrainResult), score, save and time the run; write its record.

    Any training error ends in a failed record, not a lost run."""
    cfg, folder, prov = run.cfg, run.folder, run.prov
    status, error, metrics, throughput, artifacts = "completed", "", {}, {}, {}
    curves: list[dict[str, Any]] = []
    cost: dict[str, float] = {}
    ok, check = None, {}
    try:
        result = trained()
        curves = result.curves
        cost = {"train_seconds": result.train_seconds, "data_seconds": result.data_seconds,
                "periodic_eval_seconds": result.eval_seconds, "resumed_from_step": result.resumed_from}
        if result.pruned:
            status = "pruned"
        else:
            t0 = time.perf_counter()
            final = run.evaluate(run.trainee, qualitative=True)
            cost["eval_seconds"] = time.perf_counter() - t0
            metrics = _headline(final, prov["miou_convention"])
            ok, check = training_check(curves, result.initial_loss, cfg.train.trained_loss_ratio)
            artifacts = {"qualitative": final["qualitative"]}
            prov["eval_protocol"] = final.get("protocol", {})
            curves.append({"step": result.steps_done, "epoch": curves[-1]["epoch"] if curves else 0.0,
                           "val_miou": final["miou"]})
            if on_eval is not None:
                on_eval(result.steps_done, final)
            if run.world.rank == 0:
                save_model(folder / MODEL_FILE, run.model, cfg, run.train_set)
                if cfg.bench.enabled:
                    t0 = time.perf_counter()
                    throughput = benchmark(run.model, cfg, run.device, run.train_set.num_classes)
                    cost["bench_seconds"] = time.perf_counter() - t0
                if cfg.model.freeze_backbone:  # the whole network is timed above; this is the head's training rate
                    throughput["head_train_img_s"] = (
                        (result.steps_done - result.resumed_from) * cfg.train.batch_size / result.train_seconds)
            (folder / CHECKPOINT).unlink(missing_ok=True)
    except ConfigError:
        raise
    except NonFiniteLoss as e:
        status, error, curves = "failed", str(e), e.curves
    except Exception as e:  # noqa: BLE001 - any training error ends in a failed record, not a lost run
        if disk_error(e):
            raise  # a full or read-only results folder is not the cell's failure: the caller says so in one line
        status, error = "failed", _error_line(e)
        atomic_write_text(folder / "error.txt", traceback.format_exc())
    if status == "failed":
        run.say(f"failed: {error}")
    record = RunRecord(**run.base, status=status, error=error, metrics=metrics, curves=curves,
                       throughput=throughput, cost=cost, artifacts=artifacts, finished_at=_now(), trained=ok,
                       training_check=check)
    if run.world.rank == 0:
        write_record(record, folder)
        if status == "completed":
            run.say(f"mIoU {100 * metrics['miou']:.2f}  pixel acc {100 * metrics['pixel_acc']:.2f}  "
                    f"({cost.get('train_seconds', 0):.1f}s training)")
    distributed.barrier()
    return record


def _error_line(e: BaseException) -> str:
    """`Type: first line`; for an error raised in a DataLoader worker, the original error (which names the file)
    rather than torch's "Caught X in DataLoader worker process 0." wrapper."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "Original Traceback" in str(e):
        name, sep, message = lines[-1].partition(": ")
        return f"{name.rsplit('.', 1)[-1]}: {message}" if sep else lines[-1]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _headline(final: dict[str, Any], convention: str) -> dict[str, Any]:
    """The record's metrics: headline scores, the confusion matrix and compact per-image counts."""
    metrics = {k: final[k] for k in HEADLINE if k in final}
    metrics["convention"] = convention
    metrics["confusion_matrix"] = final["confusion_matrix"]
    if "per_image_intersection" in final:
        metrics["per_image"] = {"intersection": pack_counts(np.asarray(final["per_image_intersection"])),
                                "union": pack_counts(np.asarray(final["per_image_union"])),
                                "ids": list(final.get("per_image_ids", []))}
    return metrics


def evaluate_model_file(path: Path, *, data_root: str | None = None, split: str | None = None,
                        overrides: Sequence[str] = (), out: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a model.pt on any split of its data set (or another copy in the same layout); writes JSON."""
    saved = load_model(path)
    config = saved["config"]
    extra = list(overrides) + ([f"data.root={data_root}"] if data_root else [])
    config["model"]["pretrained"] = ""  # the weights come from model.pt
    config.get("run", {}).pop("pack", None)  # written into model.pt while packed training existed; no key now
    if config["model"].get("freeze_backbone"):  # the whole network on images: no stored maps, any eval mode
        config["model"]["freeze_backbone"] = False
        config["data"].update(feature_flip=False, feature_crop=None)
    cfg = from_dict(apply_overrides(config, extra))
    split = split or cfg.data.val_split
    dataset = build_dataset(cfg.data, split, train=False)
    device = setup(cfg)
    model = build_model(cfg.model, dataset.num_classes)
    model.load_state_dict(saved["model"])
    metrics = evaluate(model.to(device), dataset, cfg=cfg.eval, device=device, workers=cfg.data.workers)
    result = {"checkpoint": str(path), "data": cfg.data.name, "split": split, "images": len(dataset),
              "eval_mode": cfg.eval.mode, **{k: metrics[k] for k in HEADLINE if k in metrics}}
    out = out or path.with_name(f"eval_{cfg.data.name}_{split}_{cfg.eval.mode}.json")
    atomic_write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result, out


def bench_config(cfg: Config) -> dict[str, Any]:
    """The throughput protocol on a freshly built model of `cfg` (no training, no data set opened)."""
    device = setup(cfg)
    num_classes = len(class_names(cfg.data))
    model = build_model(cfg.model, num_classes).to(device)
    return benchmark(model, cfg, device, num_classes)
