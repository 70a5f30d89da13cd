"""The conclusion in sentences, the search's lead and a controls study's own conclusion."""

import pandas as pd
import pytest
from fabricate import fabricate  # noqa: I001

from study.record import seeds_text
from study.report.__main__ import main as report_main
from study.report.conclusion import caveats, claim_line, one_line, untrained_text, what_ran
from study.report.search_section import lead
from study.results.claims import ClaimRow

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
    cpu = {**FACTS, "device": "cpu (x86_64, 1 threads)", "hardware": "cpu (avx2, no native bf16)",
           "cpus": ["AMD EPYC"], "cpu_unrecorded": 35}
    assert "; on cpu (x86_64, 1 threads), AMD EPYC (CPU model not recorded by 35 runs), cpu (avx2, no native " \
           "bf16), bf16 autocast." in what_ran(cpu, amp=True)
    assert "on cpu (x86_64, 1 threads), cpu (avx2, no native bf16), CPU model not recorded," in what_ran(
        {**cpu, "cpus": [], "cpu_unrecorded": 5}, amp=True)
    row = ClaimRow(claim="AVE beats MAX", better="B1-AVE", worse="B1-MAX", n=5, diff=42.3, ci_low=37.92,
                   ci_high=46.68, verdict="supported", paper_diff=0.13)
    assert claim_line(row) == ("**supported**: AVE beats MAX, B1-AVE vs B1-MAX: Δ +42.3 mIoU points, 95% interval "
                               "[37.9, 46.7], 5 seeds (paper: +0.13).")
    assert seeds_text([0, 1, 2, 3]) == "0-3" and seeds_text([0, 2]) == "0, 2" and seeds_text([0]) == "0"
    assert seeds_text([5, 0, 1, 2]) == "0-2, 5" and seeds_text([]) == ""


def test_untrained_runs_and_caveats():
    assert untrained_text(FACTS) == ("Did not train: 1 of 5 completed runs (B1-MAX seed 2); the verdicts count a "
                                     "seed where both runs of a row trained, the stall rates are compared as an "
                                     "outcome of their own, and counting every completed run is the sensitivity "
                                     "analysis under the verdicts.")
    assert untrained_text(FACTS, "controls").endswith("a comparison counts a seed where both of its runs trained, "
                                                      "and lists the runs left out.")
    assert untrained_text({**FACTS, "untrained": []}).startswith("Did not train: none (every completed run")
    assert untrained_text({**FACTS, "untrained": [], "unjudged": ["PRES-FCN"]}) == (
        "Did not train: none flagged (every run the training check judged passed it; not judged: PRES-FCN).")
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
    assert one_line("grid", [ClaimRow(claim="c", better="a", worse="b", verdict="supported")], None) == "1 supported of 1 claim row"


LOCAL = {"LOC-FCN": {"data.probe_kind": "local", "model.ppm": False},
         "LOC-B1-AVE": {"data.probe_kind": "local", "model.bins": [1], "model.pool": "avg", "model.reduction": False}}


def test_a_controls_study_concludes_on_its_controls_not_on_the_papers_claims(tmp_path):
    # equivalent within 2 points by construction: Δ per seed +0.2, +0.1, -0.1, +0.2, 0.0 points
    fcn = [0.770, 0.772, 0.771, 0.769, 0.770]
    ave = [f + d / 100 for f, d in zip(fcn, [0.2, 0.1, -0.1, 0.2, 0.0], strict=True)]
    comparison = {"a": "LOC-B1-AVE", "b": "LOC-FCN", "expected": "equivalent", "margin": 2, "why": "local labels"}
    study = fabricate(tmp_path / "results", {"LOC-FCN": fcn, "LOC-B1-AVE": ave}, variants=LOCAL,
                      name="my_null_check", paper_table=None, baseline="LOC-FCN", controls=[comparison])
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "my_null_check" / "index.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Conclusion", "## Controls: can the harness say no?"]
    assert "## The paper's claims: verdicts" not in headings and "PPM beats the FCN" not in md
    conclusion = md.split("## Controls")[0]
    assert "1 of 1 control comparisons as implied, 0 against, 0 undecided" in conclusion
    assert ("local, LOC-B1-AVE vs LOC-FCN (expected: no difference (within ±2)): equivalent within ±2, Δ 0.08 mIoU "
            "points, 90.0% interval [") in conclusion
    assert "as implied: yes" in conclusion
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "1 of 1 control comparisons as implied" in index


def test_a_study_file_s_caveats_lead_the_report_s_caveats(tmp_path):
    from study.manifest import StudyManifest, read_manifest, write_manifest

    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.56, 0.57, 0.58]})
    manifest = read_manifest(study)
    write_manifest(study, StudyManifest.from_dict({**manifest.to_dict(), "caveats": ["Rescaling breaks the cue."]}))
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "table1" / "index.md").read_text()
    assert "Caveats:\n\n- Rescaling breaks the cue.\n- The context probe is a mechanism check" in md
    assert "1 claim row (pairs of variants that differ only in the claim's choice; one Holm family, this study's)" in md


def test_study_file_caveats_are_sentences(tmp_path):
    from study.config import ConfigError
    from study.search.space import load_study

    (tmp_path / "base.yaml").write_text("train: {steps: 3}\n")
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase_config: base.yaml\nvariants: {A: {}}\ncaveats: [1, 2]\n")
    with pytest.raises(ConfigError, match="caveats: must be a list of sentences"):
        load_study(path)
    path.write_text("name: s\nbase_config: base.yaml\nvariants: {A: {}}\ncaveats: [' Say it. ']\n")
    assert load_study(path).caveats == ("Say it.",)


def test_a_folder_data_set_is_named_and_a_class_absent_from_evaluation_is_a_caveat():
    from types import SimpleNamespace

    from study.report.conclusion import data_text
    from study.results.summary import absent_classes

    facts = {"data": ["folder"], "folder_roots": ["mydata"], "train_size": 24, "val_size": 8}
    assert data_text(facts) == "folder data set mydata (24 training, 8 evaluation images)"
    run = SimpleNamespace(status="completed", metrics={"confusion_matrix": [[5, 1, 0], [0, 0, 0], [2, 0, 7]],
                                                       "per_class_iou": {"a": 0.5, "b": float("nan"), "c": 0.7}})
    facts = {"data": ["folder"], "feature_caches": [], "pretrained": False, "weights": [], **absent_classes([run])}
    assert facts["absent"] == 1 and facts["absent_names"] == ["b"] and facts["classes"] == 3
    text = " ".join(caveats(facts, pd.DataFrame({"miou_std": []}), [], "grid"))
    assert "No evaluation image has a pixel of b: it counts 0 in every run's mIoU" in text and "above 66.67" in text


def test_a_null_control_that_gained_bounds_the_claims_of_a_study_on_the_same_data(tmp_path):
    """A controls study beside a claims study, on the same data and recipe: its null row that gained (about +1 point, interval
    above 0) becomes a caveat naming the supported rows whose interval reaches down to that gain."""
    fcn = [0.770, 0.772, 0.771, 0.769, 0.770]
    gained = [f + d / 100 for f, d in zip(fcn, [1.0, 1.1, 0.9, 1.0, 1.05], strict=True)]
    comparison = {"a": "LOC-B1-AVE", "b": "LOC-FCN", "expected": "equivalent", "margin": 0.5, "why": "local labels"}
    nulls = fabricate(tmp_path / "results", {"LOC-FCN": fcn, "LOC-B1-AVE": gained}, variants=LOCAL,
                      name="my_nulls", paper_table=None, baseline="LOC-FCN", controls=[comparison])
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.506, 0.527, 0.518]})
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    caveats = (tmp_path / "reports" / "table1" / "index.md").read_text().split("Caveats:")[1].split("\n## ")[0]
    assert ("Null controls (my_nulls, labels that need no context): in 1 of its 1 comparisons where the "
            "construction implies no difference, a came out above b, by up to 1.01 [") in caveats
    assert "(LOC-B1-AVE vs LOC-FCN, local): on this data a variant gains that much with no context to use." in caveats
    assert ("Of this study's supported rows, 1 has an interval reaching down to 1.01 or below, so on their own they "
            "do not exclude a gain of that size without context: PPM beats the FCN baseline (B1-AVE vs FCN, 0.70 [")\
        in caveats
    assert report_main([str(nulls), "--out", str(tmp_path / "reports")]) == 0
    assert "Null controls" not in (tmp_path / "reports" / "my_nulls" / "index.md").read_text()  # no claim rows


def test_a_null_control_on_another_recipe_bounds_nothing(tmp_path):
    fcn = [0.770, 0.772, 0.771, 0.769, 0.770]
    gained = [f + d / 100 for f, d in zip(fcn, [1.0, 1.1, 0.9, 1.0, 1.05], strict=True)]
    comparison = {"a": "LOC-B1-AVE", "b": "LOC-FCN", "expected": "equivalent", "margin": 0.5, "why": "local labels"}
    other_recipe = {v: {**o, "train.lr": 0.02} for v, o in LOCAL.items()}
    fabricate(tmp_path / "results", {"LOC-FCN": fcn, "LOC-B1-AVE": gained}, variants=other_recipe, name="my_nulls",
              paper_table=None, baseline="LOC-FCN", controls=[comparison])
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.506, 0.527, 0.518]})
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    assert "Null controls" not in (tmp_path / "reports" / "table1" / "index.md").read_text()


def test_a_null_control_that_held_adds_no_caveat(tmp_path):
    fcn = [0.770, 0.772, 0.771, 0.769, 0.770]
    held = [f + d / 100 for f, d in zip(fcn, [0.2, 0.1, -0.1, 0.2, 0.0], strict=True)]
    comparison = {"a": "LOC-B1-AVE", "b": "LOC-FCN", "expected": "equivalent", "margin": 2, "why": "local labels"}
    fabricate(tmp_path / "results", {"LOC-FCN": fcn, "LOC-B1-AVE": held}, variants=LOCAL, name="my_nulls",
              paper_table=None, baseline="LOC-FCN", controls=[comparison])
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.506, 0.527, 0.518]})
    assert report_main([str(study), "--out", str(tmp_path / "reports")]) == 0
    assert "Null controls" not in (tmp_path / "reports" / "table1" / "index.md").read_text()
