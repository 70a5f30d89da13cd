"""The training loop: poly-scheduled SGD over a step budget, periodic evaluation, checkpoints, resume.

It receives an `evaluate` function instead of importing the evaluation package. The hot loop never syncs with
the host: the loss is accumulated on the device and read once every `log_every` steps.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from study.config import Config, ConfigError, TrainConfig
from study.data.build import seed_worker
from study.device import resolve, widest_conv
from study.train.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, set_rng_state
from study.train.distributed import World
from study.train.losses import segmentation_loss
from study.train.optim import build_optimizer, set_lr


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; `curves` holds what was logged before."""

    def __init__(self, message: str, curves: list[dict[str, Any]]):
        super().__init__(message)
        self.curves = curves


@dataclass
class TrainResult:
    steps_done: int
    curves: list[dict[str, Any]] = field(default_factory=list)
    pruned: bool = False
    train_seconds: float = 0.0  # wall time of the loop (without evaluation)
    data_seconds: float = 0.0  # part of it spent waiting for batches
    eval_seconds: float = 0.0
    resumed_from: int = 0
    initial_loss: float | None = None  # the loss of the run's first step (what `trained` is judged against)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches for steps [start, total): epoch e is a permutation seeded by (seed, e), split across ranks.

    `batch_size` is the global batch; each of `world` ranks takes its consecutive slice of batch_size // world.
    Each sample comes with its own augmentation seed, so a run's data is a pure function of (seed, step): the
    same with any number of data workers or ranks, and a resumed run continues exactly where it stopped.
    """

    INDEX_BITS = 48  # a run's sample positions (step x global batch + slot) stay below 2**48

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ConfigError(f"train.batch_size: the global batch {batch_size} is not divisible by the {world} "
                              f"processes")
        self.per_epoch = n // batch_size
        if self.per_epoch < 1:
            raise ConfigError(f"train.batch_size: the global batch {batch_size} exceeds the {n} training samples")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.rank, self.world, self.per_rank = rank, world, batch_size // world

    def __len__(self) -> int:
        return self.total - self.start

    def sample_seed(self, step: int, slot: int) -> int:
        """The augmentation seed of global batch slot `slot` at `step`.

        The slot's position in the whole run, step * batch_size + slot, is below 2**48; the run seed goes above
        it. So two samples share a seed only if they are the same sample of the same run, whatever the batch
        size, the number of ranks or the run seed (random.Random takes the integer exactly).
        """
        position = step * self.batch_size + slot
        if position >= 2**self.INDEX_BITS:
            raise ConfigError("train.steps: too many samples for per-sample augmentation seeds")
        return (self.seed << self.INDEX_BITS) | position

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm, perm_epoch = None, -1
        first = self.rank * self.per_rank
        for step in range(self.start, self.total):
            epoch, k = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                perm, perm_epoch = torch.randperm(self.n, generator=g).tolist(), epoch
            batch = perm[k * self.batch_size + first: k * self.batch_size + first + self.per_rank]
            yield [(i, self.sample_seed(step, first + j)) for j, i in enumerate(batch)]


def _progress(total: int, start: int):
    """A tqdm bar on a terminal; None (plain lines) otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, leave=False)


class _LossWindow:
    """The loss summed on the device and read once per log window: the curves, the NonFiniteLoss check, and a
    progress bar (a terminal) or log lines (otherwise), on rank 0 only."""

    def __init__(self, device: torch.device, start: int, tc: TrainConfig, per_epoch: int, rank0: bool,
                 log: Callable[[str], None]):
        self.running = torch.zeros((), device=device)
        self.first: torch.Tensor | None = None  # the first step's loss, kept on the device until the first log
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.start, self.time = start, time.perf_counter()
        self.tc, self.per_epoch, self.rank0, self.log = tc, per_epoch, rank0, log
        self.bar = _progress(tc.steps, start) if rank0 else None

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.running += loss
        if step == 0:
            self.first = loss.clone()
        self.finite &= torch.isfinite(loss)

    def flush(self, done: int, lr: float, result: TrainResult) -> None:
        """Close the window ending at step `done`: one host sync, a curve point, the bar or a log line."""
        tc = self.tc
        mean_loss = float(self.running / (done - self.start))  # the one host sync per log window
        if self.first is not None:
            result.initial_loss, self.first = float(self.first), None
        if not bool(self.finite) or not math.isfinite(mean_loss):
            raise NonFiniteLoss(f"non-finite loss between steps {self.start + 1} and {done} (lr {lr:.3g})",
                                result.curves)
        now = time.perf_counter()
        img_s = (done - self.start) * tc.batch_size / max(now - self.time, 1e-9)
        result.curves.append({"step": done, "epoch": round(done / self.per_epoch, 4), "loss": mean_loss, "lr": lr})
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", img_s=f"{img_s:.1f}")
            self.bar.update(done - self.bar.n)
        elif self.rank0:
            eta = (tc.steps - done) * (now - self.time) / (done - self.start)
            self.log(f"step {done}/{tc.steps} loss {mean_loss:.4f} lr {lr:.3e} {img_s:.1f} img/s ETA {eta:.0f}s")
        self.running.zero_()
        self.start, self.time = done, now

    def leave_out(self, seconds: float) -> None:
        """Time spent outside training (periodic evaluation): not in the window's images per second."""
        self.time += seconds

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resume(ckpt_path: Path, base: torch.nn.Module, optimizer: torch.optim.Optimizer, config_hash: str,
            log: Callable[[str], None]) -> TrainResult:
    """A fresh TrainResult, or the one of the checkpoint at `ckpt_path` with model, optimizer and RNGs restored."""
    result = TrainResult(steps_done=0)
    if not ckpt_path.exists():
        return result
    state = load_checkpoint(ckpt_path)
    if state.get("config_hash") != config_hash:
        raise ConfigError(f"{ckpt_path}: checkpoint was written by another config (hash "
                          f"{state.get('config_hash')}, now {config_hash}); delete it to start over")
    base.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    result.steps_done = result.resumed_from = state["step"]
    result.curves = list(state.get("curves", []))
    result.initial_loss = state.get("initial_loss")
    log(f"resumed from {ckpt_path} at step {state['step']}")
    return result


def train(model: torch.nn.Module, train_set: Dataset, *, cfg: Config, device: torch.device, folder: Path,
          config_hash: str, evaluate: Callable[[torch.nn.Module], dict[str, Any]],
          on_eval: Callable[[int, dict[str, Any]], bool] | None = None, world: World | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train `model` (maybe DDP-wrapped) for cfg.train.steps SGD steps, resuming from folder/checkpoint.pt.

    The loss is cross-entropy plus cfg.model.aux_weight x the aux head's; `evaluate(model)` runs every
    `train.eval_every` steps and `on_eval(step, metrics)` returning True stops the run as pruned. Returns a
    TrainResult: steps done, the logged curves (loss, lr, val mIoU), whether it was pruned, and the wall time
    split into training, waiting for data and periodic evaluation. Raises NonFiniteLoss when the loss diverges.
    """
    tc = cfg.train
    world = world or World()
    base = model.module if hasattr(model, "module") else model
    optimizer = build_optimizer(base.param_groups(), tc)
    ckpt_path = folder / CHECKPOINT
    result = _resume(ckpt_path, base, optimizer, config_hash, log)

    sampler = StepBatchSampler(len(train_set), tc.batch_size, cfg.run.seed, result.steps_done, tc.steps,
                               world.rank, world.size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.workers, worker_init_fn=seed_worker,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.run.seed))
    speed = resolve(device, tc, widest_conv(base))  # bf16 and channels_last only where they pay here
    autocast, memory_format = speed.autocast(device), speed.memory_format
    aux_weight = cfg.model.aux_weight
    ignore = cfg.data.ignore_index
    stride = tc.loss_stride  # the loss's pixels: every stride-th of the labels in each direction

    window = _LossWindow(device, result.steps_done, tc, sampler.per_epoch, world.rank == 0, log)
    model.train()
    loop_start = time.perf_counter()
    batches = iter(loader)
    for step in range(result.steps_done, tc.steps):
        t0 = time.perf_counter()
        images, targets = next(batches)
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        result.data_seconds += time.perf_counter() - t0
        lr = set_lr(optimizer, step, tc)
        if stride > 1:
            targets = targets[:, ::stride, ::stride]
        with autocast:
            outputs = model(images, sample_stride=stride) if stride > 1 else model(images)
        loss = segmentation_loss(outputs, targets, aux_weight, ignore)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.add(step, loss.detach())
        done = result.steps_done = step + 1

        if done % tc.log_every == 0 or done == tc.steps:
            window.flush(done, lr, result)
        if tc.checkpoint_every and done % tc.checkpoint_every == 0 and done < tc.steps and world.rank == 0:
            save_checkpoint(ckpt_path, base, optimizer, done, config_hash, {"curves": result.curves,
                                                                          "initial_loss": result.initial_loss})
        if tc.eval_every and done % tc.eval_every == 0 and done < tc.steps:
            t_eval = time.perf_counter()
            metrics = evaluate(base)
            result.eval_seconds += time.perf_counter() - t_eval
            model.train()
            result.curves.append({"step": done, "epoch": round(done / sampler.per_epoch, 4),
                                  "val_miou": metrics["miou"]})
            window.leave_out(time.perf_counter() - t_eval)
            if on_eval is not None and on_eval(done, metrics):
                result.pruned = True
                break
    window.close()
    result.train_seconds = time.perf_counter() - loop_start - result.eval_seconds
    return result
