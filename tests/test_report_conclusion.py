"""The conclusion in sentences, the search's lead and the controls hook of a report."""

import sys
import types

import pandas as pd
from fabricate import fabricate  # noqa: I001

from study.report.__main__ import main as report_main
from study.report.blocks import Block
from study.report.conclusion import caveats, claim_line, one_line, seeds_text, untrained_text, what_ran
from study.report.render import controls_hook
from study.report.search_section import lead

FACTS = {"runs": 6, "completed": 5, "failed": 1, "pruned": 0, "variants": 2, "seeds": [0, 1, 2],
         "data": ["camvid"], "train_size": 367, "val_size": 101, "crop": ["512x512"], "steps": ["1000"],
         "batch": ["8"], "lr": ["0.01", "0.02", "0.03"], "device": "cuda:0", "hardware": "cuda (NVIDIA H200)",
         "precision": "bfloat16", "precision_from": "provenance", "pretrained": True, "weights": ["ckpt/resnet50.pth"], "dates": None,
         "untrained": [("B1-MAX", 2)], "checked": True}


def test_what_ran_and_the_claim_lines_in_sentences():
    assert what_ran(FACTS, amp=True) == (
        "What ran: 6 runs (5 completed, 1 failed) of 2 variants, seeds 0-2, on camvid (367 training, 101 evaluation "
        "images); recipe: crop 512x512; steps 1000; batch 8; lr varied (3 values, 0.01 to 0.03); from pretrained "
        "weights (ckpt/resnet50.pth); on cuda:0, cuda (NVIDIA H200), bf16 autocast.")
    row = {"claim": "AVE beats MAX", "better": "B1-AVE", "worse": "B1-MAX", "n": 5, "diff": 42.3,
           "ci_low": 37.92, "ci_high": 46.68, "verdict": "supported", "paper_diff": 0.13}
    assert claim_line(row) == ("**supported**: AVE beats MAX, B1-AVE vs B1-MAX: Δ +42.3 mIoU points, 95% interval "
                               "[37.9, 46.7], 5 seeds (paper: +0.13).")
    assert seeds_text([0, 1, 2, 3]) == "0-3" and seeds_text([0, 2]) == "0, 2" and seeds_text([0]) == "0"


def test_untrained_runs_and_caveats():
    assert untrained_text(FACTS) == ("Did not train: 1 of 5 completed runs (B1-MAX seed 2); claims are judged on "
                                     "the runs that trained.")
    assert untrained_text({**FACTS, "untrained": []}).startswith("Did not train: none (every completed run")
    assert "none flagged" in untrained_text({**FACTS, "untrained": [], "checked": False})
    summary = pd.DataFrame({"variant": ["A", "B", "C"], "miou_std": [1.0, 1.2, 24.6],
                            "miou_seeds": [[0], [0], [0, 1]], "miou_values": [[60.0], [61.0], [22.0, 77.0]]})
    probe = caveats({**FACTS, "data": ["probe"], "pretrained": False}, summary, ["rows differ in device: a, b"],
                    "grid")
    assert probe[0].startswith("The context probe is a mechanism check on data built so that the mechanism can show")
    assert probe[1].startswith("Trained from scratch")
    assert probe[2] == ("C spreads over seeds far more than the others (sd 25 points against a median of 1.2); its "
                        "runs by seed: 0: 22.0, 1: 77.0.")
    assert probe[3] == "Compared runs differ in their protocol: rows differ in device: a, b."
    assert caveats(FACTS, summary.iloc[:2], [], "grid") == ["Pretrained backbone: ckpt/resnet50.pth."]


def test_a_search_leads_with_its_best_configuration_and_the_papers_rank():
    summary = {"counts": {"COMPLETE": 3, "PRUNED": 2}, "params": ["model.bins", "train.lr"], "completed": 3,
               "best": [{"number": 7, "value": 0.8239, "model.bins": "[1, 2]", "train.lr": "0.027433054"}],
               "paper": {"keys": ["model.bins"], "best_is_paper": False, "best_paper_value": 0.801,
                         "best_paper_rank": 2}}
    assert lead(summary) == [
        "Best configuration: trial 7 (model.bins [1, 2], train.lr 0.0274), mIoU 82.39 on one seed.",
        "The best trial with the paper's pyramid (bins 1,2,3,6, average pooling, DR), over the searched model.bins, "
        "ranks 2 of 3 completed (mIoU 80.10)."]
    assert one_line("search", [], summary) == ("best trial 7: mIoU 82.39 (one seed); the paper's pyramid ranks 2 of "
                                               "3 completed")
    assert one_line("grid", [{"verdict": "supported"}], None) == "1 supported of 1 claim row"


def test_a_controls_study_opens_with_its_controls_block(tmp_path, monkeypatch):
    fake = types.ModuleType("study.report.controls_block")
    seen = []

    def render(df):
        seen.append(sorted(df["variant"].unique()))
        return [Block("heading", "Controls: fake"), Block("text", "did each control come out as built")]

    fake.render = render
    monkeypatch.setitem(sys.modules, "study.report.controls_block", fake)
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.6, 0.61, 0.59]},
                      name="probe_controls")
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "probe_controls" / "index.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Conclusion", "## Controls: fake", "## The paper's claims: verdicts"]
    assert seen == [["B1-AVE", "FCN"]]


def test_without_the_controls_module_the_hook_adds_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "study.report.controls_block", None)  # import raises ImportError
    assert controls_hook(pd.DataFrame({"variant": ["A"]})) == []
