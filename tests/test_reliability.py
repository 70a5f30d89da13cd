"""Reliability: untrusted checkpoints stay data, a full or read-only results folder is one line, bad data fails
one cell and names the file."""

import pickle
import random

import numpy as np
import pytest
import torch

from study.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class Payload:
    """Unpickling this would create a marker file: proof that the file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def draws():
    return random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1))


def test_checkpoint_rng_state_round_trips_through_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.randn()  # leave cached gaussians in both states
    save_checkpoint(tmp_path / "checkpoint.pt", model, opt, 7, "abc", {"curves": [{"step": 1, "loss": 0.5}]})
    expected = draws()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    set_rng_state(state["rng"])
    assert draws() == expected
    assert state["step"] == 7 and state["config_hash"] == "abc" and state["curves"] == [{"step": 1, "loss": 0.5}]


def test_older_checkpoint_with_numpy_rng_tuple_still_loads(tmp_path):
    np.random.seed(5), random.seed(5)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"model": {}, "optimizer": {}, "step": 2, "rng": old, "config_hash": "x"}, tmp_path / "c.pt")
    expected = draws()
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert draws() == expected


@pytest.mark.parametrize("where", ["top", "rng"])
def test_hostile_checkpoint_is_refused_in_one_line_and_never_run(tmp_path, where):
    marker = tmp_path / "pwned"
    state = {"model": {}, "optimizer": {}, "step": 1, "rng": rng_state(), "config_hash": "x"}
    if where == "top":
        state = Payload(marker)
    else:
        state["rng"]["python"] = Payload(marker)
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "checkpoint.pt")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "checkpoint.pt") in msg and "refused" in msg and "io.open" in msg
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))  # the payload is real: unpickled, it runs
    assert (tmp_path / "control").exists()


def test_hostile_checkpoint_in_a_cell_fails_that_cell_without_running(tiny_cfg, tmp_path):
    from study.config import config_hash
    from study.record import run_dir
    from study.run import run_one

    cfg = tiny_cfg("train.checkpoint_every=2", "bench.enabled=false")
    folder = run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "optimizer": {}, "step": 1, "config_hash": config_hash(cfg), "rng": Payload(marker)},
               folder / "checkpoint.pt")
    record = run_one(cfg, log=lambda line: None)
    assert record.status == "failed" and "checkpoint.pt" in record.error and "refused" in record.error
    assert "\n" not in record.error and not marker.exists()
