"""Ours against the official PSPNet50 (study.throughput.official), with a stand-in clone: the official code is not
in the repository and nothing is downloaded, so the test writes a small model with the official interface."""

import sys
import textwrap

import pytest

from study.throughput.official import main

STAND_IN = textwrap.dedent("""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class PSPNet(nn.Module):
        # the official constructor's arguments and forward(x, y) contract, a tiny network
        def __init__(self, layers=50, bins=(1, 2, 3, 6), dropout=0.1, classes=2, zoom_factor=8, use_ppm=True,
                     criterion=nn.CrossEntropyLoss(ignore_index=255), pretrained=True):
            super().__init__()
            assert layers == 50 and not pretrained and zoom_factor == 8
            self.criterion = criterion
            self.cls = nn.Conv2d(3, classes, 3, padding=1)
            self.aux = nn.Conv2d(3, classes, 1)

        def forward(self, x, y=None):
            assert (x.shape[2] - 1) % 8 == 0
            out = self.cls(x)
            if self.training:
                return out.max(1)[1], self.criterion(out, y), self.criterion(self.aux(x), y)
            return out
""")


@pytest.fixture
def clone(tmp_path, monkeypatch):
    (tmp_path / "semseg" / "model").mkdir(parents=True)
    (tmp_path / "semseg" / "model" / "pspnet.py").write_text(STAND_IN)
    for name in ("model", "model.pspnet"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path / "semseg"
    for name in ("model", "model.pspnet"):
        sys.modules.pop(name, None)


def test_both_models_train_and_infer_in_alternating_rounds(clone, capsys):
    args = ["configs/probe.yaml", "run.threads=1", "--semseg", str(clone), "--rounds", "2", "--steps", "1",
            "--batch", "2", "--size", "33"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "against the official PSPNet50 (fp32 NCHW), batch 2, 33x33" in out
    assert "training step: ours" in out and "inference: ours" in out and "x as fast (" in out
    assert main([*args, "--same-settings"]) == 0
    assert "official PSPNet50 (fp32 NCHW)" not in capsys.readouterr().out


def test_a_folder_that_is_not_a_clone_and_bad_sizes_are_one_line_errors(tmp_path, capsys):
    assert main(["configs/base.yaml", "--semseg", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no model/pspnet.py (expected a clone of hszhao/semseg)" in err
    assert main(["configs/base.yaml", "--semseg", str(tmp_path), "--size", "32"]) == 2
    assert "--size - 1 must be divisible by 8" in capsys.readouterr().err
