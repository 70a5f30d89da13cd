"""Seeds of one variant trained as one packed network: K runs, one training step for all of them.

Packing is an execution strategy, not another experiment. Member k starts from its separate run's initialisation,
reads its separate run's batches and augmentation (the same StepBatchSampler, seeded by its own seed), keeps its own
parameters, batch-norm statistics and optimizer state, and the loss is the sum of the members' losses, so each
member's gradient is its own. `Packed` stacks the members' parameters and maps one functional network over them
with `torch.func.vmap` (PyTorch's model-ensembling recipe): each convolution runs as one grouped convolution of K
groups. What differs from K separate runs: the dropout masks (one generator draws for the pack), the order of some
floating-point sums, the memory format (NCHW: vmap's batched convolutions are NCHW) and, under bf16 autocast, the
batch norms' input (fp32 in a pack; a separate run's bf16 input is computed in fp32 too).

A member whose loss stops being finite fails alone, as its separate run would; the others train on. Each member's
checkpoint is the one its separate run would write (`checkpoint.pt` in its own folder), so a pack killed mid-way
resumes packed, or one run at a time.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.data import DataLoader, Dataset

from study.config import Config
from study.data.build import seed_worker
from study.device import resolve, widest_conv
from study.train.checkpoint import CHECKPOINT, load_checkpoint, save_state, set_rng_state
from study.train.loop import NonFiniteLoss, StepBatchSampler, TrainResult
from study.train.losses import segmentation_loss
from study.train.optim import build_optimizer, set_lr


class Packed:
    """K members as one functional network: stacked parameters (one leaf each, K on dim 0) and buffers.

    `modules` are the members' own networks, built as their separate runs build them; they are left untouched
    until `load_into` copies a member's trained state back.
    """

    def __init__(self, modules: list[torch.nn.Module]):
        self.template = modules[0]
        params, buffers = stack_module_state(modules)
        grad = {name: p.requires_grad for name, p in self.template.named_parameters()}
        # NCHW whatever the members' layout: vmap refuses channels_last queries (seen on CUDA)
        self.params = {name: p.detach().contiguous().requires_grad_(grad[name]) for name, p in params.items()}
        self.buffers = {name: b.contiguous() for name, b in buffers.items()}
        self.base = copy.deepcopy(self.template).to("meta")
        for module in self.base.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.register_forward_pre_hook(_float_input)
        self.k = len(modules)

    def __call__(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """inputs (K, N, ...) -> the network's outputs, each (K, N, ...); each member its own dropout draws."""
        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        return vmap(one, randomness="different")(self.params, self.buffers, inputs)

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def param_groups(self) -> dict[str, list[torch.Tensor]]:
        """The template's optimizer groups (backbone, new layers) over the stacked parameters, in the same order,
        so that the packed optimizer's state index i is parameter i of a separate run's optimizer."""
        names = {id(p): name for name, p in self.template.named_parameters()}
        return {group: [self.params[names[id(p)]] for p in ps] for group, ps in self.template.param_groups().items()}

    def _stacked(self, name: str) -> torch.Tensor:
        return self.params[name] if name in self.params else self.buffers[name]

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's state_dict, as its separate run's module would give it."""
        return {name: self._stacked(name)[k].detach().clone() for name in self.template.state_dict()}

    @torch.no_grad()
    def load_member(self, k: int, state: dict[str, torch.Tensor]) -> None:
        for name in self.template.state_dict():
            self._stacked(name)[k].copy_(state[name])

    def load_into(self, k: int, module: torch.nn.Module) -> None:
        """Copy member k's trained state into `module` (its run's own network)."""
        module.load_state_dict(self.member_state(k))


def _float_input(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Batch norm in a pack reads fp32: vmap's batch norm applies the affine part itself, and its backward on CUDA
    refuses a bf16 input beside fp32 running statistics (a separate run's fused kernel takes both and computes in
    fp32 anyway)."""
    x = args[0]
    return (x.float(), *args[1:]) if x.is_floating_point() and x.dtype != torch.float32 else args


def member_optimizer_state(state: dict[str, Any], k: int) -> dict[str, Any]:
    """Member k's share of the packed optimizer's state_dict: the state_dict its separate run's optimizer has."""
    return {"state": {i: {key: v[k].clone() if torch.is_tensor(v) and v.dim() > 0 else v for key, v in s.items()}
                      for i, s in state["state"].items()},
            "param_groups": copy.deepcopy(state["param_groups"])}


def packed_optimizer_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The packed optimizer's state_dict from its members' (each a separate run's), stacked on dim 0."""
    first = states[0]
    return {"state": {i: {key: torch.stack([s["state"][i][key] for s in states]) if torch.is_tensor(v) else v
                          for key, v in entry.items()}
                      for i, entry in first["state"].items()},
            "param_groups": copy.deepcopy(first["param_groups"])}


@dataclass(frozen=True)
class Member:
    """One run of a pack: its config, where it writes, its network and data, how it is scored and how it says."""

    cfg: Config
    folder: Path
    config_hash: str
    trainee: torch.nn.Module
    train_set: Dataset
    evaluate: Callable[[torch.nn.Module], dict[str, Any]]
    log: Callable[[str], None]


def checkpoint_steps(members: list[Member]) -> list[int | None]:
    """The step of each member's checkpoint (None: it has none): a pack resumes together only from one step."""
    out = []
    for m in members:
        path = m.folder / CHECKPOINT
        out.append(int(load_checkpoint(path)["step"]) if path.exists() else None)
    return out


def train_packed(members: list[Member], *, device: torch.device) -> list[TrainResult | NonFiniteLoss]:
    """Train the members (one variant, different seeds, one train config) together for cfg.train.steps steps.

    Returns, per member, its TrainResult (its own curves and first loss; train_seconds its share of the pack's
    wall time) or the NonFiniteLoss that ended it. Every member's state ends in its own `trainee`. The members'
    checkpoints must all be at one step, or absent (`checkpoint_steps`).
    """
    k, cfg = len(members), members[0].cfg
    tc = cfg.train
    packed = Packed([m.trainee for m in members])
    optimizer = build_optimizer(packed.param_groups(), tc)
    results = [TrainResult(steps_done=0) for _ in members]
    start = _resume(members, packed, optimizer, results)

    loaders = [iter(DataLoader(m.train_set, batch_sampler=StepBatchSampler(len(m.train_set), tc.batch_size,
                                                                             m.cfg.run.seed, start, tc.steps),
                               num_workers=cfg.data.workers, worker_init_fn=seed_worker,
                               pin_memory=device.type == "cuda",
                               generator=torch.Generator().manual_seed(m.cfg.run.seed)))
               for m in members]
    per_epoch = len(members[0].train_set) // tc.batch_size
    autocast = resolve(device, tc, widest_conv(members[0].trainee)).autocast(device)
    aux_weight, ignore = cfg.model.aux_weight, cfg.data.ignore_index

    running = torch.zeros(k, device=device)
    first = None
    finite = torch.ones(k, dtype=torch.bool, device=device)
    failed: list[NonFiniteLoss | None] = [None] * k
    window_start, window_time = start, time.perf_counter()
    eval_seconds, data_seconds = 0.0, 0.0
    packed.train()
    loop_start = time.perf_counter()
    for step in range(start, tc.steps):
        t0 = time.perf_counter()
        batches = [next(loader) for loader in loaders]
        inputs = torch.stack([b[0] for b in batches]).to(device, non_blocking=True)
        targets = torch.stack([b[1] for b in batches]).to(device, non_blocking=True)
        data_seconds += time.perf_counter() - t0
        lr = set_lr(optimizer, step, tc)
        with autocast:
            outputs = packed(inputs)
        losses = torch.stack([segmentation_loss({name: out[i] for name, out in outputs.items()}, targets[i],
                                                aux_weight, ignore) for i in range(k)])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each member's parameters get their own loss's gradient
        optimizer.step()
        running += losses.detach()
        if step == 0:
            first = losses.detach().clone()
        finite &= torch.isfinite(losses.detach())
        done = step + 1

        if done % tc.log_every == 0 or done == tc.steps:
            means = (running / (done - window_start)).tolist()  # the one host sync per log window
            ok = finite.tolist()
            if first is not None:
                for r, value in zip(results, first.tolist(), strict=True):
                    r.initial_loss = value
                first = None
            now = time.perf_counter()
            img_s = (done - window_start) * tc.batch_size * k / max(now - window_time, 1e-9)
            for i, m in enumerate(members):
                if failed[i] is not None:
                    continue
                results[i].steps_done = done
                if not ok[i] or not math.isfinite(means[i]):
                    failed[i] = NonFiniteLoss(f"non-finite loss between steps {window_start + 1} and {done} "
                                              f"(lr {lr:.3g})", results[i].curves)
                    m.log(f"failed at step {done}: non-finite loss; the pack's other members train on")
                    continue
                results[i].curves.append({"step": done, "epoch": round(done / per_epoch, 4), "loss": means[i],
                                          "lr": lr})
                m.log(f"step {done}/{tc.steps} loss {means[i]:.4f} lr {lr:.3e} (packed x{k}: {img_s:.1f} img/s)")
            running.zero_()
            window_start, window_time = done, now

        if tc.checkpoint_every and done % tc.checkpoint_every == 0 and done < tc.steps:
            state = optimizer.state_dict()
            for i, m in enumerate(members):
                if failed[i] is None:
                    save_state(m.folder / CHECKPOINT, packed.member_state(i), member_optimizer_state(state, i), done,
                               m.config_hash, {"curves": results[i].curves, "initial_loss": results[i].initial_loss})
        if tc.eval_every and done % tc.eval_every == 0 and done < tc.steps:
            t_eval = time.perf_counter()
            for i, m in enumerate(members):
                if failed[i] is None:
                    packed.load_into(i, m.trainee)
                    results[i].curves.append({"step": done, "epoch": round(done / per_epoch, 4),
                                              "val_miou": m.evaluate(m.trainee)["miou"]})
            eval_seconds += time.perf_counter() - t_eval
            window_time += time.perf_counter() - t_eval
    wall = time.perf_counter() - loop_start - eval_seconds
    for i, (m, r) in enumerate(zip(members, results, strict=True)):
        packed.load_into(i, m.trainee)
        r.train_seconds, r.data_seconds, r.eval_seconds = wall / k, data_seconds / k, eval_seconds / k
    return [f if f is not None else r for f, r in zip(failed, results, strict=True)]


def _resume(members: list[Member], packed: Packed, optimizer: torch.optim.Optimizer,
            results: list[TrainResult]) -> int:
    """Load every member's checkpoint (all at one step, or none); returns the step to start from."""
    paths = [m.folder / CHECKPOINT for m in members]
    if not any(p.exists() for p in paths):
        return 0
    states = [load_checkpoint(p) for p in paths]
    steps = {int(s["step"]) for s in states}
    if len(steps) != 1:
        raise ValueError(f"packed members' checkpoints are at different steps {sorted(steps)}")
    for i, (m, s, r) in enumerate(zip(members, states, results, strict=True)):
        if s.get("config_hash") != m.config_hash:
            raise ValueError(f"{paths[i]}: checkpoint was written by another config")
        packed.load_member(i, s["model"])
        r.steps_done = r.resumed_from = int(s["step"])
        r.curves = list(s.get("curves", []))
        r.initial_loss = s.get("initial_loss")
        m.log(f"resumed from {paths[i]} at step {s['step']} (packed)")
    optimizer.load_state_dict(packed_optimizer_state([s["optimizer"] for s in states]))
    set_rng_state(states[0]["rng"])
    return steps.pop()
