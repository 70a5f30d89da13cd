import pytest
import torch

from study.config import TrainConfig
from study.train.loop import StepBatchSampler
from study.train.losses import segmentation_loss
from study.train.optim import build_optimizer, poly_lr, scheduled_lr, set_lr


def test_poly_schedule_values():
    assert poly_lr(0.01, 0, 100, 0.9) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 100, 100, 0.9) == 0.0
    assert poly_lr(0.01, 30, 100, 1.0) == pytest.approx(0.007)


def test_param_groups_get_ten_times_the_lr():
    backbone, new = [torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(3))]
    cfg = TrainConfig(lr=0.02, head_lr_mult=10.0, steps=10, poly_power=1.0)
    opt = build_optimizer({"backbone": backbone, "new": new}, cfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02, 0.2])
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in opt.param_groups)
    assert set_lr(opt, 5, cfg) == pytest.approx(0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])


def test_adamw_takes_the_same_groups_schedule_and_decay():
    """One AdamW step on a zero gradient moves a weight only by the decoupled decay: w (1 - lr x wd)."""
    backbone, new = [torch.nn.Parameter(torch.ones(2))], [torch.nn.Parameter(torch.ones(3))]
    cfg = TrainConfig(lr=0.02, head_lr_mult=10.0, steps=10, poly_power=1.0, optimizer="adamw", weight_decay=0.5)
    opt = build_optimizer({"backbone": backbone, "new": new}, cfg)
    assert isinstance(opt, torch.optim.AdamW) and [g["lr"] for g in opt.param_groups] == pytest.approx([0.02, 0.2])
    for p in backbone + new:
        p.grad = torch.zeros_like(p)
    opt.step()
    assert backbone[0].tolist() == pytest.approx([1 - 0.02 * 0.5] * 2) and new[0].tolist() == pytest.approx([0.9] * 3)
    assert set_lr(opt, 5, cfg) == pytest.approx(0.01) and opt.param_groups[1]["lr"] == pytest.approx(0.1)
    assert isinstance(build_optimizer({"backbone": backbone, "new": new}, TrainConfig()), torch.optim.SGD)


def test_linear_warmup_ramps_to_the_poly_lr_then_follows_it():
    # W = 4, 10 steps, power 1: poly = 0.1 * (1 - s/10); warm-up factor (s + 1) / 4 on steps 0-3
    cfg = TrainConfig(lr=0.1, steps=10, poly_power=1.0, warmup_steps=4)
    got = [scheduled_lr(0.1, s, cfg) for s in range(6)]
    assert got == pytest.approx([0.1 * 1.0 * 0.25, 0.1 * 0.9 * 0.5, 0.1 * 0.8 * 0.75, 0.1 * 0.7, 0.1 * 0.6, 0.1 * 0.5])
    off = TrainConfig(lr=0.1, steps=10, poly_power=1.0)  # the default: no warm-up, the old schedule
    assert [scheduled_lr(0.1, s, off) for s in range(10)] == [poly_lr(0.1, s, 10, 1.0) for s in range(10)]
    opt = build_optimizer({"backbone": [torch.nn.Parameter(torch.zeros(1))],
                           "new": [torch.nn.Parameter(torch.zeros(1))]}, TrainConfig(lr=0.1, head_lr_mult=10.0,
                                                                                    steps=10, poly_power=1.0,
                                                                                    warmup_steps=4))
    assert set_lr(opt, 1, TrainConfig(lr=0.1, head_lr_mult=10.0, steps=10, poly_power=1.0, warmup_steps=4)) \
        == pytest.approx(0.045)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.045, 0.45])  # both groups warm up


def test_loss_adds_the_weighted_aux_term():
    torch.manual_seed(0)
    out, aux = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    y[0, 0, 0] = 255
    main = torch.nn.functional.cross_entropy(out, y, ignore_index=255)
    extra = torch.nn.functional.cross_entropy(aux, y, ignore_index=255)
    assert segmentation_loss({"out": out, "aux": aux}, y, 0.4) == pytest.approx(float(main + 0.4 * extra))
    assert segmentation_loss({"out": out, "aux": aux}, y, 0.0) == pytest.approx(float(main))
    assert segmentation_loss({"out": out}, y, 0.4) == pytest.approx(float(main))


def test_sampler_is_a_function_of_seed_and_step():
    full = list(StepBatchSampler(10, 3, seed=7, start=0, total=9))
    resumed = list(StepBatchSampler(10, 3, seed=7, start=4, total=9))
    assert resumed == full[4:]
    per_epoch = [sorted(i for batch in full[e * 3:(e + 1) * 3] for i, _ in batch) for e in range(3)]
    assert all(len(set(ep)) == 9 for ep in per_epoch)  # no repeats inside an epoch (drop_last)
    assert full != list(StepBatchSampler(10, 3, seed=8, start=0, total=9))
    seeds = [s for batch in full for _, s in batch]
    assert len(set(seeds)) == len(seeds)  # each sample of each step has its own augmentation seed
    ranks = [list(StepBatchSampler(12, 4, seed=1, start=0, total=3, rank=r, world=2)) for r in range(2)]
    for a, b in zip(*ranks, strict=True):
        assert len(a) == len(b) == 2  # the global batch of 4 split over 2 ranks
        assert not {i for i, _ in a} & {i for i, _ in b}  # ranks see disjoint samples


def test_global_batch_gives_the_same_samples_and_seeds_on_any_number_of_ranks():
    one = list(StepBatchSampler(24, 6, seed=3, start=0, total=10))
    for world in (2, 3, 6):
        ranks = [list(StepBatchSampler(24, 6, seed=3, start=0, total=10, rank=r, world=world)) for r in range(world)]
        joined = [sum(batches, []) for batches in zip(*ranks, strict=True)]
        assert joined == one


def test_augmentation_seeds_never_collide():
    seen = {}
    for seed in (0, 1, 2):
        for batch, world in ((1, 1), (4, 2), (8, 4), (4096, 1), (5000, 8)):
            sampler = StepBatchSampler(10_000, batch, seed=seed, start=0, total=3, rank=0, world=world)
            for step in range(3):
                for slot in range(batch):
                    key = sampler.sample_seed(step, slot)
                    assert seen.setdefault(key, (seed, step * batch + slot)) == (seed, step * batch + slot)
    # the old rule (seed * 1_000_003 + step) * 4096 + slot collided here: slot 4096 of step 0 = slot 0 of step 1
    s = StepBatchSampler(10_000, 5000, seed=0, start=0, total=2)
    assert s.sample_seed(0, 4096) != s.sample_seed(1, 0)


def test_global_batch_not_divisible_by_the_ranks_is_an_error():
    from study.config import ConfigError

    with pytest.raises(ConfigError, match="train.batch_size: the global batch 6 is not divisible by the 4"):
        StepBatchSampler(24, 6, seed=0, start=0, total=2, rank=0, world=4)


def test_batch_larger_than_the_split_is_an_error():
    from study.config import ConfigError

    with pytest.raises(ConfigError, match="train.batch_size"):
        StepBatchSampler(3, 4, seed=0, start=0, total=5)
