"""run_one(cfg): the single place that wires data, model, training, evaluation and the benchmark of one run."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from study.atomic import atomic_write_text, atomic_write_with
from study.bench import benchmark
from study.config import Config, ConfigError, config_hash
from study.data.build import build_dataset
from study.env import pick_device, provenance, seed_everything
from study.evaluate.predict import evaluate
from study.models.build import build_model
from study.record import RECORD_FILE, RunRecord, read_record, run_dir, run_id, write_record
from study.train import distributed
from study.train.checkpoint import CHECKPOINT
from study.train.loop import NonFiniteLoss, train

MODEL_FILE = "model.pt"
HEADLINE = ("miou", "miou_present", "pixel_acc", "mean_acc", "per_class_iou")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_one(cfg: Config, on_eval: Callable[[int, dict], bool] | None = None,
            log: Callable[[str], None] | None = None) -> RunRecord:
    """Train, evaluate and benchmark one (variant, seed); write and return its run record.

    A completed record with the same config hash is returned as it is; a checkpoint of the same config is resumed;
    a checkpoint of another config is refused (ConfigError). Training failures end as status "failed" with the
    reason in the record; `on_eval(step, metrics)` returning True ends the run as "pruned".
    """
    folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
    chash = config_hash(cfg)
    record_path = folder / RECORD_FILE
    if record_path.exists():
        try:
            old = read_record(record_path)
        except ValueError:
            old = None
        if old is not None and old.status == "completed" and old.config_hash == chash:
            return old

    world = distributed.init_from_env()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = pick_device(cfg.run.device, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    prefix = f"[{run_id(cfg.run.variant, cfg.run.seed)}] "
    say = log or (lambda line: print(prefix + line, flush=True))
    if world.rank != 0:
        say = lambda line: None  # noqa: E731

    train_set = build_dataset(cfg.data, cfg.data.train_split)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = build_model(cfg.model, train_set.num_classes).to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    bn = "BatchNorm"
    net: torch.nn.Module = model
    if world.distributed:
        net, bn = distributed.wrap(model, device, cfg.train.sync_bn)
    if cfg.train.compile:
        net = torch.compile(net)

    folder.mkdir(parents=True, exist_ok=True)
    started = _now()
    prov = {**provenance(device), "world_size": world.size, "eval_mode": cfg.eval.mode,
            "batch_size": cfg.train.batch_size * world.size, "bn": bn,
            "miou_convention": "mean over all classes, absent classes count 0 (official PSPNet)",
            "train_size": len(train_set), "val_size": len(val_set)}
    base = dict(id=run_id(cfg.run.variant, cfg.run.seed), study=cfg.run.study, variant=cfg.run.variant,
                seed=cfg.run.seed, config=cfg.to_dict(), config_hash=chash, provenance=prov, started_at=started)

    def evaluate_fn(m: torch.nn.Module, qualitative: bool = False) -> dict[str, Any]:
        metrics = None
        if world.rank == 0:
            q_dir = folder / "qualitative" if qualitative and cfg.eval.qualitative else None
            metrics = evaluate(m, val_set, cfg.eval, device, q_dir, cfg.data.workers)
        if dist.is_initialized():
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics

    say(f"training {cfg.train.steps} steps on {device} ({len(train_set)} train / {len(val_set)} val images)")
    status, error, metrics, throughput, artifacts = "completed", "", {}, {}, {}
    curves: list[dict[str, Any]] = []
    cost: dict[str, float] = {}
    try:
        result = train(net, train_set, cfg, device, folder, chash, evaluate_fn, on_eval, world.rank, world.size,
                       say)
        curves = result.curves
        cost = {"train_seconds": result.train_seconds, "data_seconds": result.data_seconds,
                "periodic_eval_seconds": result.eval_seconds, "resumed_from_step": result.resumed_from}
        if result.pruned:
            status = "pruned"
        else:
            t0 = time.perf_counter()
            final = evaluate_fn(model, qualitative=True)
            cost["eval_seconds"] = time.perf_counter() - t0
            metrics = {k: final[k] for k in HEADLINE}
            metrics["convention"] = prov["miou_convention"]
            metrics["confusion_matrix"] = final["confusion_matrix"]
            artifacts = {"qualitative": final["qualitative"]}
            curves.append({"step": result.steps_done, "epoch": curves[-1]["epoch"] if curves else 0.0,
                           "val_miou": final["miou"]})
            if on_eval is not None:
                on_eval(result.steps_done, final)
            if world.rank == 0:
                _save_model(folder / MODEL_FILE, model, cfg, train_set)
                if cfg.bench.enabled:
                    t0 = time.perf_counter()
                    throughput = benchmark(model, cfg, device, train_set.num_classes)
                    cost["bench_seconds"] = time.perf_counter() - t0
            (folder / CHECKPOINT).unlink(missing_ok=True)
    except ConfigError:
        raise
    except NonFiniteLoss as e:
        status, error, curves = "failed", str(e), e.curves
    except Exception as e:  # noqa: BLE001 - any training error ends in a failed record, not a lost run
        status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        atomic_write_text(folder / "error.txt", traceback.format_exc())
    if status == "failed":
        say(f"failed: {error}")
    record = RunRecord(**base, status=status, error=error, metrics=metrics, curves=curves, throughput=throughput,
                       cost=cost, artifacts=artifacts, finished_at=_now())
    if world.rank == 0:
        write_record(record, folder)
        if status == "completed":
            say(f"mIoU {100 * metrics['miou']:.2f}  pixel acc {100 * metrics['pixel_acc']:.2f}  "
                f"({cost.get('train_seconds', 0):.1f}s training)")
    distributed.barrier()
    return record


def _save_model(path: Path, model: torch.nn.Module, cfg: Config, dataset) -> None:
    state = {"model": model.state_dict(), "config": cfg.to_dict(), "class_names": list(dataset.class_names),
             "palette": [list(c) for c in dataset.palette]}
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))
