"""Packed runs (study.train.packed, study.run.run_packed): the same runs as separate ones, each its own record."""

import pytest
import torch
from conftest import TINY

from study.config_files import load_config
from study.record import RECORD_FILE, read_record, run_dir
from study.run import run_one, run_packed
from study.train.checkpoint import CHECKPOINT, load_checkpoint
from study.train.packed import Packed, member_optimizer_state, packed_optimizer_state

# fp32, no dropout (a packed member draws its own masks, not its separate run's), no benchmark
EXACT = [*TINY, "train.amp=false", "model.dropout=0.0", "bench.enabled=false", "train.steps=24",
         "train.log_every=4"]


def cfgs(out, seeds, *extra, variant="B1236"):
    return [load_config(None, [*EXACT, f"run.out_dir={out}", "run.study=pk", f"run.variant={variant}",
                               f"run.seed={s}", *extra]) for s in seeds]


def losses(record):
    return [c["loss"] for c in record.curves if "loss" in c]


def test_a_packed_run_is_its_separate_run(tmp_path):
    """Member k of a pack starts from seed k's initialisation and reads seed k's batches: after 24 steps (fp32) its
    loss curve, weights and scores agree with its separate run; its record says it was packed, and with whom."""
    alone = [run_one(c) for c in cfgs(tmp_path / "alone", [0, 1])]
    packed = run_packed(cfgs(tmp_path / "packed", [0, 1]))
    assert [r.status for r in packed] == ["completed", "completed"]
    for a, p in zip(alone, packed, strict=True):
        assert (a.id, a.config_hash) == (p.id, p.config_hash)
        assert losses(p) == pytest.approx(losses(a), rel=1e-4)
        assert p.metrics["miou"] == pytest.approx(a.metrics["miou"], abs=1e-3)
        assert p.metrics["pixel_acc"] == pytest.approx(a.metrics["pixel_acc"], abs=1e-3)
        assert p.trained == a.trained
        assert p.provenance["packed"] == {"members": 2, "seeds": [0, 1]} and "packed" not in a.provenance
        wa = torch.load(run_dir(tmp_path / "alone", "pk", "B1236", a.seed) / "model.pt", weights_only=True)["model"]
        wp = torch.load(run_dir(tmp_path / "packed", "pk", "B1236", p.seed) / "model.pt", weights_only=True)["model"]
        for name, value in wa.items():
            if value.is_floating_point():
                assert torch.allclose(wp[name], value, atol=1e-4, rtol=1e-3), name
    assert losses(packed[0]) != pytest.approx(losses(packed[1]), rel=1e-3)  # two members, two runs
    # run again: both cells are complete, nothing trains
    again = run_packed(cfgs(tmp_path / "packed", [0, 1]))
    assert [r.finished_at for r in again] == [r.finished_at for r in packed]


def test_a_pack_killed_mid_way_resumes_from_its_members_checkpoints(tmp_path, monkeypatch):
    """Each member writes its separate run's checkpoint; a pack stopped at step 12 resumes packed from there, and a
    member's checkpoint resumes as a separate run as well, to the same end."""
    import study.train.packed as packed_mod

    extra = ("train.checkpoint_every=12",)
    full = run_packed(cfgs(tmp_path / "full", [0, 1], *extra))

    real_save = packed_mod.save_state

    def save_then_die(path, *a, **k):
        real_save(path, *a, **k)
        if path.parent.name.endswith("__s1"):
            raise KeyboardInterrupt  # the process dies after both checkpoints are written

    monkeypatch.setattr(packed_mod, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_packed(cfgs(tmp_path / "cut", [0, 1], *extra))
    monkeypatch.setattr(packed_mod, "save_state", real_save)
    folders = [run_dir(tmp_path / "cut", "pk", "B1236", s) for s in (0, 1)]
    assert [load_checkpoint(f / CHECKPOINT)["step"] for f in folders] == [12, 12]
    assert not any((f / RECORD_FILE).exists() for f in folders)

    resumed = run_packed(cfgs(tmp_path / "cut", [0, 1], *extra))
    assert [r.cost["resumed_from_step"] for r in resumed] == [12, 12]
    for a, b in zip(full, resumed, strict=True):
        assert losses(b) == pytest.approx(losses(a), rel=1e-4)
        assert not (run_dir(tmp_path / "cut", "pk", "B1236", b.seed) / CHECKPOINT).exists()

    # a member's checkpoint is a separate run's: seed 0 alone, from the packed checkpoint
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(packed_mod, "save_state", save_then_die)
        run_packed(cfgs(tmp_path / "mixed", [0, 1], *extra))
    alone = run_one(cfgs(tmp_path / "mixed", [0], *extra)[0])
    assert alone.cost["resumed_from_step"] == 12 and losses(alone) == pytest.approx(losses(full[0]), rel=1e-4)


def test_cells_that_cannot_pack_run_one_at_a_time(tmp_path, capsys):
    """One cell left, or cells of two different variants: run_one each, and the reason said once."""
    one = run_packed(cfgs(tmp_path, [3], "train.steps=2"))
    assert [r.status for r in one] == ["completed"] and "packed" not in one[0].provenance
    mixed = cfgs(tmp_path, [4], "train.steps=2") + cfgs(tmp_path, [5], "train.steps=2", "model.ppm=false")
    records = run_packed(mixed)
    assert [r.status for r in records] == ["completed", "completed"]
    assert "2 cells one at a time, not packed: the cells are not seeds of one variant" in capsys.readouterr().out
    assert all((run_dir(tmp_path, "pk", "B1236", s) / RECORD_FILE).exists() for s in (3, 4, 5))


def test_a_diverging_member_fails_alone(tmp_path):
    """A member whose loss stops being finite ends as failed, as its separate run would; its pack-mates complete."""
    from study.run import _prepare
    from study.train.packed import Member, train_packed

    runs = [_prepare(c, None) for c in cfgs(tmp_path, [0, 1], "train.steps=4", "train.log_every=2")]
    with torch.no_grad():
        next(runs[1].trainee.parameters()).fill_(float("nan"))  # member 1's network is broken from the start
    outcomes = train_packed([Member(cfg=r.cfg, folder=r.folder, config_hash=r.chash, trainee=r.trainee,
                                    train_set=r.train_set, evaluate=r.evaluate, log=lambda line: None)
                             for r in runs], device=torch.device("cpu"))
    assert outcomes[0].steps_done == 4 and len(losses_of(outcomes[0])) == 2
    assert isinstance(outcomes[1], Exception) and "non-finite loss" in str(outcomes[1])


def losses_of(result):
    return [c["loss"] for c in result.curves if "loss" in c]


def test_a_members_optimizer_state_round_trips():
    """Cutting member k's optimizer state out of the pack's and stacking the members' back is the identity."""
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    packed = Packed([a, b])
    assert torch.equal(packed.member_state(1)["weight"], b.weight) and packed.member_state(0).keys() == {"weight",
                                                                                                        "bias"}
    opt = torch.optim.SGD(list(packed.params.values()), lr=0.1, momentum=0.9)
    packed.params["weight"].sum().backward()
    packed.params["bias"].grad = torch.ones(2, 2)
    opt.step()
    state = opt.state_dict()
    members = [member_optimizer_state(state, k) for k in range(2)]
    assert members[0]["state"][0]["momentum_buffer"].shape == (2, 3)
    back = packed_optimizer_state(members)
    for i, entry in state["state"].items():
        assert torch.equal(back["state"][i]["momentum_buffer"], entry["momentum_buffer"])
    assert back["param_groups"] == state["param_groups"]


def test_records_of_a_pack_read_back(tmp_path):
    records = run_packed(cfgs(tmp_path, [0, 1], "train.steps=2"))
    for r in records:
        back = read_record(run_dir(tmp_path, "pk", "B1236", r.seed) / RECORD_FILE)
        assert back.provenance["packed"]["seeds"] == [0, 1] and back.provenance["settings"]["channels_last"] is False
        assert back.cost["train_seconds"] > 0


@pytest.mark.slow  # two sweeps of 8 tiny runs
def test_a_packed_study_reaches_the_unpacked_studys_verdicts(tmp_path, monkeypatch):
    """The same study file swept one run at a time and packed four seeds a job (run.pack=4): per cell the same mIoU
    (fp32, no dropout), and the claims rule's rows the same verdicts and differences."""
    from conftest import write_tiny_yaml

    from study.results.claims import judge_claims
    from study.results.table import build_table
    from study.search import runner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # one worker, in this process
    write_tiny_yaml(tmp_path / "tiny.yaml", ("train.amp=false", "model.dropout=0.0", "bench.enabled=false",
                                             "train.steps=24", "train.log_every=8", "data.train_size=32"))
    study = tmp_path / "study.yaml"
    study.write_text("name: pk\nbase_config: tiny.yaml\nbaseline: FCN\nseeds: [0, 1, 2, 3]\nvariants:\n"
                     "  FCN: {model.ppm: false}\n  B1236-AVE: {model.bins: [1, 2, 3, 6]}\n")
    tables = {}
    for pack in (1, 4):
        out = tmp_path / f"pack{pack}"
        assert runner.main([str(study), "--out", str(out), f"run.pack={pack}"]) == 0
        tables[pack] = build_table(out / "pk").sort_values(["variant", "seed"]).reset_index(drop=True)
    alone, packed = tables[1], tables[4]
    assert (packed["status"] == "completed").all() and len(packed) == 8
    assert list(packed["miou"]) == pytest.approx(list(alone["miou"]), abs=1e-3)
    records = [read_record(p) for p in (tmp_path / "pack4" / "pk" / "runs").glob(f"*/{RECORD_FILE}")]
    assert all(r.provenance["packed"]["members"] == 4 for r in records)
    rows = {pack: [(r.better, r.worse, r.verdict, round(r.diff, 2)) for r in judge_claims(tables[pack])]
            for pack in tables}
    assert rows[4] == rows[1] and rows[1]
    from study.report.render import render_study

    folder = render_study(tmp_path / "pack4" / "pk", tmp_path / "reports")
    text = (folder / "index.md").read_text()
    assert "execution: 8 of 8 runs trained packed, 4 seeds of a variant as one network" in text
