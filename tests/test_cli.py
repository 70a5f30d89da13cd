"""The command line: one-line errors with exit status 2, run / evaluate / bench end to end on a tiny probe."""

import json

import pytest
from conftest import write_tiny_yaml  # noqa: I001

from study.__main__ import main


@pytest.fixture
def config(tmp_path):
    return write_tiny_yaml(tmp_path / "tiny.yaml")


@pytest.mark.parametrize("argv, message", [
    (["run", "missing.yaml"], "missing.yaml: config file not found"),
    (["bench", "CONFIG", "model.colour=red"], "model.colour: unknown key"),
    (["run", "CONFIG", "train.lr=-1"], "train.lr: must be > 0"),
    (["run", "CONFIG", "data.name=camvid", "data.root=/nonexistent"], "/nonexistent: CamVid root folder not found"),
    (["evaluate", "--checkpoint", "nope.pt"], "nope.pt: checkpoint not found"),
    (["frobnicate"], "unknown command"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, config, capsys):
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")


@pytest.mark.slow  # trains, evaluates and benchmarks
def test_run_then_evaluate_on_another_split_then_bench(config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config), f"run.out_dir={out}", "bench.enabled=false"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    from study.config import config_hash
    from study.config_files import load_config

    chash = config_hash(load_config(config, [f"run.out_dir={out}", "bench.enabled=false"]))
    assert summary["folder"] == str(out / "adhoc" / "runs" / f"{chash}__s0")  # named by the config hash
    checkpoint = out / "adhoc" / "runs" / f"{chash}__s0" / "model.pt"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--split", "test", "eval.mode=slide"]) == 0
    result = json.loads((checkpoint.parent / "eval_probe_test_slide.json").read_text())
    assert result["split"] == "test" and result["eval_mode"] == "slide" and 0 <= result["miou"] <= 1
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "val.json")]) == 0
    val = json.loads((tmp_path / "val.json").read_text())
    assert val["miou"] == pytest.approx(summary["miou"])  # the same weights give the run's own val score
    assert main(["bench", str(config), "--out", str(tmp_path / "bench.json")]) == 0
    bench = json.loads((tmp_path / "bench.json").read_text())["throughput"]
    assert bench["train_img_s"] > 0 and bench["gflops"] > 0 and bench["batch_size"] == 2
    assert "train_img_s" in capsys.readouterr().out


class _Payload:
    """Unpickling this runs a shell command (what a hostile model.pt would carry)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_model_file_carrying_a_pickle_payload_is_refused_and_never_run(tmp_path, capsys):
    import torch

    marker = tmp_path / "payload_ran"
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "config": {}, "extra": _Payload(marker)}, path)
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.startswith(f"error: {path}: not a model file") and len(err.strip().splitlines()) == 1
