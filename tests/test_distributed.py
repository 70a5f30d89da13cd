"""The torchrun path with one process on CPU (gloo): DDP wrapping, rank-0 writes, same numbers as a plain run."""

import socket

import pytest
import torch.distributed as dist

from study.run import run_one

pytestmark = pytest.mark.slow  # a process group and training


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_ddp_matches_a_plain_run(tiny_cfg, monkeypatch):
    plain = run_one(tiny_cfg("bench.enabled=false", "run.variant=plain"))
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    try:
        ddp = run_one(tiny_cfg("bench.enabled=false", "run.variant=ddp"))
        assert dist.is_initialized() and dist.get_backend() == "gloo"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert ddp.status == "completed" and ddp.provenance["world_size"] == 1
    assert ddp.provenance["bn"] == "BatchNorm"  # SyncBatchNorm only on GPUs
    assert ddp.metrics["miou"] == plain.metrics["miou"]
