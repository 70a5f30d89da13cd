"""The packed training step that `python -m study.throughput.packing` times: K members of one network (K seeds of a
variant) stepped as one functional network. A measuring tool only: the product trains one run at a time.

`Packed` stacks the members' parameters and buffers (K on dim 0) and maps one functional network over them with
`torch.func.vmap` (PyTorch's model-ensembling recipe), so each convolution runs as one grouped convolution of K
groups; `packed_step` is one SGD step of all K on the sum of their losses.

What a packed step keeps from K separate steps: member k's own parameters, optimizer state (momentum, weight decay:
elementwise on the stacked tensors), its own batch, and its own batch-norm batch statistics and running statistics
(vmap maps batch norm over members, never across them); the loss is the sum of the members' losses, so each
member's gradient is its own. tests/test_packing.py checks two fp32 members without dropout against two separate
models over three steps: the same losses, parameters and batch-norm statistics within 1e-5.

What a packed step changes against K separate steps, exactly:
- dropout masks: one generator draws every member's masks for the pack (vmap's randomness="different"), so member
  k's masks are not the ones its separate run would draw from its own seed's stream;
- floating-point summation order: grouped convolutions and their backward add in another order, so results agree
  to rounding, not bit for bit;
- memory format: NCHW always (vmap's batched convolutions are NCHW, and refuse channels_last members on CUDA),
  where a separate run takes channels_last on a GPU or a CPU with bf16 on AMX (study/device.py);
- under bf16 autocast, batch norm reads and writes fp32 in a pack (a forward pre-hook casts its input; vmap's
  CUDA batch norm backward refused a bf16 input beside fp32 running statistics), where a separate run's fused
  kernel reads and writes bf16 and computes in fp32: the ops between a batch norm and the next convolution (ReLU,
  the residual add) run in fp32 in a pack and in bf16 in a separate run.
Nothing else differs in `python -m study.throughput.packing`: both sides start from the same initialisations and
step on the same batches with the same SGD settings.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap


class Packed:
    """K members as one functional network: stacked parameters (one leaf each, K on dim 0) and buffers.

    `modules` are the members' own networks, built as their separate runs build them; they are left untouched.
    """

    def __init__(self, modules: list[torch.nn.Module]):
        params, buffers = stack_module_state(modules)
        grad = {name: p.requires_grad for name, p in modules[0].named_parameters()}
        # NCHW whatever the members' layout: vmap refuses channels_last queries (seen on CUDA)
        self.params = {name: p.detach().contiguous().requires_grad_(grad[name]) for name, p in params.items()}
        self.buffers = {name: b.contiguous() for name, b in buffers.items()}
        self.base = copy.deepcopy(modules[0]).to("meta")
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


def _float_input(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Batch norm in a pack reads fp32 (see the module docstring: vmap's CUDA batch norm backward refused bf16)."""
    x = args[0]
    return (x.float(), *args[1:]) if x.is_floating_point() and x.dtype != torch.float32 else args


def packed_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """The sum over members of each member's mean cross-entropy: every member's gradient is its own."""
    k = logits.shape[0]
    return sum(F.cross_entropy(logits[i].float(), targets[i], ignore_index=ignore_index) for i in range(k))


def packed_step(packed: Packed, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor,
                autocast) -> torch.Tensor:
    """One SGD step of all K members; returns the summed loss (on the device)."""
    with autocast:
        logits = packed(images)["out"]
    loss = packed_loss(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
