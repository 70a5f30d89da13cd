"""run_one end to end on a tiny probe: record contents, determinism, resume, failures, pruning."""

import json

import numpy as np
import pytest

from study.config import ConfigError
from study.record import read_record, run_dir
from study.run import run_one

pytestmark = pytest.mark.slow  # run_one trains


def folder(cfg):
    return run_dir(cfg.run.out_dir, cfg.run.study, cfg.run.variant, cfg.run.seed)


def test_smoke_run_writes_a_complete_record(tiny_cfg):
    cfg = tiny_cfg("model.aux_weight=0.4", "train.eval_every=3")
    rec = run_one(cfg)
    assert rec.status == "completed" and rec.error == ""
    on_disk = read_record(folder(cfg) / "record.json")
    assert on_disk == rec
    m = rec.metrics
    assert 0 <= m["miou"] <= m["miou_present"] <= 1 and 0 <= m["pixel_acc"] <= 1
    assert set(m["per_class_iou"]) == {"road", "water", "car", "boat"}
    steps = [c["step"] for c in rec.curves if "loss" in c]
    assert steps == [2, 4, 6] and all(c["lr"] > 0 for c in rec.curves if "loss" in c)
    assert [c["step"] for c in rec.curves if "val_miou" in c] == [3, 6]
    for key in ("train_img_s", "infer_img_s", "latency_ms_p50", "latency_ms_p95", "peak_mem_mb", "params_m",
                "gflops", "ppm_gflops", "batch_size", "image_size", "dtype", "channels_last", "device"):
        assert key in rec.throughput
    assert rec.throughput["gflops"] > 0 and rec.throughput["ppm_gflops"] > 0 and rec.throughput["mfu"] is None
    assert rec.cost["train_seconds"] > 0 and rec.cost["eval_seconds"] > 0
    assert rec.provenance["world_size"] == 1 and rec.provenance["torch"] and "hostname" not in rec.provenance
    # the precision and layout this device gave the config, and why; the benchmark ran the same
    chosen = rec.provenance["settings"]
    assert chosen["why"] and (chosen["dtype"], chosen["channels_last"]) == (rec.throughput["dtype"],
                                                                           rec.throughput["channels_last"])
    assert len(rec.artifacts["qualitative"]) == 2
    assert all((folder(cfg) / p).exists() for p in rec.artifacts["qualitative"])
    assert (folder(cfg) / "model.pt").exists() and not (folder(cfg) / "checkpoint.pt").exists()
    assert rec.started_at <= rec.finished_at
    # per-image counts (compact) add up to the confusion matrix; the protocol and the weights are named
    from study.record import unpack_counts

    inter, union = (unpack_counts(m["per_image"][k]) for k in ("intersection", "union"))
    cm = np.asarray(m["confusion_matrix"])
    assert inter.shape == union.shape == (4, 4)  # 4 val images x 4 classes
    assert m["per_image"]["ids"] == ["0", "1", "2", "3"]  # the probe names its images by index
    assert (inter.sum(0) == np.diag(cm)).all()
    assert (union.sum(0) == cm.sum(0) + cm.sum(1) - np.diag(cm)).all()  # intersections and unions add up
    iou = inter.sum(0) / np.maximum(union.sum(0), 1)
    assert np.mean(iou) == pytest.approx(m["miou"])
    assert 0 <= m["mean_acc"] <= m["mean_acc_present"] <= 1
    assert rec.provenance["weights"] == "from scratch"
    assert rec.provenance["eval_protocol"]["mode"] == "whole"
    assert rec.provenance["batch_size"] == 4 and rec.provenance["batch_per_rank"] == 4


def test_completed_record_is_reused(tiny_cfg):
    cfg = tiny_cfg("bench.enabled=false")
    first = run_one(cfg)
    (folder(cfg) / "model.pt").unlink()
    assert run_one(cfg) == first and not (folder(cfg) / "model.pt").exists()


def test_two_runs_of_the_same_seed_are_identical(tiny_cfg):
    a = run_one(tiny_cfg("bench.enabled=false", "run.variant=a"))
    b = run_one(tiny_cfg("bench.enabled=false", "run.variant=b"))
    c = run_one(tiny_cfg("bench.enabled=false", "run.variant=c", "run.seed=1"))
    assert a.metrics == b.metrics and [x.get("loss") for x in a.curves] == [x.get("loss") for x in b.curves]
    assert a.curves != c.curves


def test_interrupted_then_resumed_equals_uninterrupted(tiny_cfg):
    common = ("bench.enabled=false", "train.checkpoint_every=2", "train.eval_every=2", "data.augment=[scale, flip]",
              "model.aux_weight=0.4")
    reference = run_one(tiny_cfg(*common, "run.variant=ref"))
    cfg = tiny_cfg(*common, "run.variant=cut")

    def stop(step, metrics):
        if step == 4:
            raise KeyboardInterrupt  # a killed worker
        return False

    with pytest.raises(KeyboardInterrupt):
        run_one(cfg, on_eval=stop)
    assert (folder(cfg) / "checkpoint.pt").exists() and not (folder(cfg) / "record.json").exists()
    resumed = run_one(cfg)
    assert resumed.cost["resumed_from_step"] == 4
    assert resumed.metrics == reference.metrics
    assert [c.get("loss") for c in resumed.curves if "loss" in c] == \
           [c.get("loss") for c in reference.curves if "loss" in c]
    assert resumed.training_check == reference.training_check and resumed.trained == reference.trained


def test_trained_flag_judges_the_final_loss_against_the_first_steps(tiny_cfg):
    rec = run_one(tiny_cfg("bench.enabled=false", "train.log_every=1"))
    check = rec.training_check
    losses = [c["loss"] for c in rec.curves if "loss" in c]
    assert check["initial_loss"] == losses[0] and check["final_loss"] == losses[-1]  # step 1 and step 6
    assert check["ratio"] == pytest.approx(losses[-1] / losses[0]) and check["max_ratio"] == 0.45
    assert rec.trained is (check["ratio"] <= 0.45)
    off = run_one(tiny_cfg("bench.enabled=false", "train.trained_loss_ratio=0", "run.variant=nocheck"))
    assert off.trained is None and off.training_check == {}


def test_changed_config_checkpoint_is_refused(tiny_cfg):
    cfg = tiny_cfg("bench.enabled=false", "train.checkpoint_every=2", "train.eval_every=2")

    def stop(step, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_one(cfg, on_eval=stop)
    with pytest.raises(ConfigError, match="checkpoint was written by another config"):
        run_one(tiny_cfg("bench.enabled=false", "train.checkpoint_every=2", "train.eval_every=2", "train.lr=0.02"))


def test_non_finite_loss_fails_the_run_with_a_reason(tiny_cfg):
    cfg = tiny_cfg("train.lr=1e30", "train.log_every=1", "bench.enabled=false")
    rec = run_one(cfg)
    assert rec.status == "failed" and "non-finite loss" in rec.error
    steps = [c["step"] for c in rec.curves]
    assert steps == list(range(1, len(steps) + 1)) and f"and {len(steps) + 1} " in rec.error  # curve up to the blow-up
    assert json.loads((folder(cfg) / "record.json").read_text())["status"] == "failed"


def test_pruning_stops_the_run(tiny_cfg):
    seen = []

    def prune(step, metrics):
        seen.append((step, metrics["miou"]))
        return True

    rec = run_one(tiny_cfg("train.eval_every=2", "bench.enabled=false"), on_eval=prune)
    assert rec.status == "pruned" and seen and seen[0][0] == 2 and not rec.metrics


def test_other_errors_end_in_a_failed_record(tiny_cfg, monkeypatch):
    import study.run

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(study.run, "benchmark", boom)
    cfg = tiny_cfg()
    rec = run_one(cfg)
    assert rec.status == "failed" and rec.error == "RuntimeError: disk on fire"
    assert "Traceback" in (folder(cfg) / "error.txt").read_text()


def test_a_twin_is_its_own_run_on_the_seed_s_data(tiny_cfg):
    """run.twin: the same seed's data and backbone, its own head draw: another run (and config hash) of the same
    model; twin 0 is the run itself (the hash of every existing config stays)."""
    from study.config import config_hash

    plain = run_one(tiny_cfg("bench.enabled=false", "run.variant=a"))
    twin = run_one(tiny_cfg("bench.enabled=false", "run.variant=b", "run.twin=1"))
    assert config_hash(tiny_cfg("run.twin=0")) == config_hash(tiny_cfg()) != config_hash(tiny_cfg("run.twin=1"))
    assert twin.config["run"]["twin"] == 1 and twin.config_hash != plain.config_hash
    assert [c.get("loss") for c in twin.curves] != [c.get("loss") for c in plain.curves]


def test_loss_stride_hands_the_loss_every_second_pixel_of_logits_and_labels(tiny_cfg, monkeypatch):
    import study.train.loop as loop

    seen = []

    def spy(outputs, targets, aux_weight, ignore_index=255):
        seen.append((tuple(outputs["out"].shape), tuple(outputs["aux"].shape), tuple(targets.shape)))
        return loop.segmentation_loss.__wrapped__(outputs, targets, aux_weight, ignore_index)

    spy.__wrapped__ = loop.segmentation_loss
    monkeypatch.setattr(loop, "segmentation_loss", spy)
    rec = run_one(tiny_cfg("bench.enabled=false", "model.aux_weight=0.4", "train.loss_stride=2"))
    assert rec.status == "completed" and rec.config["train"]["loss_stride"] == 2
    # 32 px scenes, batch 4, 4 classes: the loss sees 16 x 16 of both, every step; evaluation stays at full size
    assert seen == [((4, 4, 16, 16), (4, 4, 16, 16), (4, 16, 16))] * 6
    assert 0 <= rec.metrics["miou"] <= 1
