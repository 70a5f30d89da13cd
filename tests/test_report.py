import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from fabricate import fabricate  # noqa: I001

from study.record import read_record, write_record
from study.report.__main__ import main as report_main
from study.report.blocks import to_markdown
from study.report.verdicts import claim_blocks
from study.results.claims import CLAIMS, find_pairs, judge_claims
from study.results.sequential import SequentialPlan
from study.results.table import ResultsError, build_table, write_table

MIOU = {"FCN": [0.50, 0.52, 0.51], "B1-MAX": [0.55, 0.56, 0.54], "B1-AVE": [0.56, 0.57, 0.58],
        "B1236-MAX": [0.58, 0.57, 0.59], "B1236-AVE": [0.62, 0.61, 0.63], "B1236-MAX-DR": [0.6, 0.6, 0.61],
        "B1236-AVE-DR": [0.63, 0.62, 0.61]}


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_report_content_and_determinism(tmp_path):
    study = fabricate(tmp_path / "results", MIOU)
    write_table(study)
    out = tmp_path / "reports"
    assert report_main([str(study), "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    first = files(out)
    assert report_main([str(study), "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    assert files(out) == first  # byte-identical
    md = (out / "table1" / "index.md").read_text()
    html = (out / "table1" / "index.html").read_text()
    for text in ("## Measured", "Beside the paper", "The paper's claims", "PPM beats the FCN baseline",
                 "supported", "41.68", "Provenance", "python -m study sweep configs/studies/table1.yaml",
                 "absent from the split counting 0"):
        assert text in md, text
        assert text.removeprefix("## ").replace("'", "&#x27;") in html, text
    for fig in ("every_run.png", "pareto.png", "curves.png", "per_class_iou.png"):
        assert (out / "table1" / "figures" / fig).stat().st_size > 1000
        assert f"figures/{fig}" in md and f'src="figures/{fig}"' in html
    assert (out / "table1" / "qualitative" / "FCN__s0_000.png").exists()
    # the index: one row per study with its one-line conclusion, data, seeds and the day its last run finished
    assert ("| [table1](table1/index.md) | fabricated | 1 supported, 12 inconclusive of 13 claim rows | probe | 0-2 | "
            "2026-01-01 |") in (out / "index.md").read_text()


def test_failed_runs_are_listed_and_strings_escaped(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.5, 0.5], "B1-AVE": [0.6, 0.6, 0.6]},
                      failed={"B1-MAX": "non-finite loss <b>at step 3</b>"}, description="<script>alert(1)</script>")
    out = tmp_path / "reports"
    assert report_main([str(study), "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    html = (out / "table1" / "index.html").read_text()
    assert "## Failed and pruned runs" in md and "non-finite loss" in md
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>at step 3</b>" not in html


def test_too_few_seeds_says_so(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5], "B1-AVE": [0.6]})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    assert "Too few seeds for a verdict" in md and "too few seeds" in md


def test_only_failed_runs_still_render(tmp_path):
    study = fabricate(tmp_path / "results", {}, failed={"FCN": "boom", "B1-AVE": "boom"})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    assert "No run completed" in (out / "table1" / "index.md").read_text()


def test_errors_are_one_line_and_nothing_is_half_written(tmp_path, capsys):
    out = tmp_path / "reports"
    assert report_main(["--results", str(tmp_path / "nope"), "--out", str(out), "--shipped", str(out)]) == 2
    assert "results folder not found" in capsys.readouterr().err
    empty = tmp_path / "results" / "empty"
    (empty / "runs").mkdir(parents=True)
    assert report_main([str(empty), "--out", str(out)]) == 2
    assert "no run records" in capsys.readouterr().err
    study = fabricate(tmp_path / "results", {"FCN": [0.5]})
    (study / "runs" / "FCN__s0" / "record.json").write_text("{not json")
    assert report_main([str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "FCN__s0/record.json" in err and err.count("\n") == 1
    assert not (out / "table1").exists()
    with pytest.raises(ResultsError, match="not found"):
        build_table(tmp_path / "missing")


@pytest.mark.slow  # a fresh interpreter renders a report (about 4 s)
def test_report_path_never_imports_torch(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.6, 0.55], "B1-AVE": [0.6, 0.62, 0.61]})
    code = ("import sys; from study.report.__main__ import main; "
            f"rc = main([{str(study)!r}, '--out', {str(tmp_path / 'reports')!r}]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_search_studies_lead_with_the_search_and_count_pruned_trials(tmp_path):
    trials = {"T0": {"train.lr": 0.01}, "T1": {"train.lr": 0.0234567}, "T2": {"train.lr": 0.03}}
    study = fabricate(tmp_path / "results", {"T0": [0.5], "T1": [0.6], "T2": [0.45]}, variants=trials, name="srch",
                      paper_table=None, baseline=None)
    manifest = study / "study.json"
    manifest.write_text(manifest.read_text().replace('"kind": "grid"', '"kind": "search"'))
    path = study / "runs" / "T2__s0" / "record.json"
    record = read_record(path)
    write_record(dataclasses.replace(record, status="pruned", metrics={}, curves=record.curves[:1]), path.parent)
    (study / "trials.csv").write_text("number,value,state,params_train.lr\n0,0.5,TrialState.COMPLETE,0.01\n"
                                      "1,0.6,TrialState.COMPLETE,0.0234567\n2,0.3,TrialState.PRUNED,0.03\n")
    (study / "importances.json").write_text('{"train.lr": 0.7, "model.pool": 0.3}')
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "srch" / "index.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Conclusion", "## Search: best configurations", "## Trials"]
    assert "Best configuration: trial 1 (train.lr 0.0235), mIoU 60.00 on one seed." in md
    assert md.index("figures/search_history.png") < md.index("figures/importances.png") < md.index("## Trials")
    assert (out / "srch" / "figures" / "importances.png").stat().st_size > 1000
    trials = md[md.index("## Trials"):md.index("## Figures")]
    assert "| 1      | T1      | 60.00  " in trials and "| 2      | T0      | 50.00  " in trials
    assert "T2" not in trials  # pruned: counted, not listed
    assert "1 pruned trials are not listed; they stopped at step 10 (1)." in trials
    assert "The paper's claims" not in md and "every_run.png" not in md  # one seed per trial: no verdicts


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_protocol_differences_are_warned(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.6, 0.61, 0.59]})
    path = study / "runs" / "B1-AVE__s0" / "record.json"
    record = read_record(path)
    provenance = {**record.provenance, "device": "cuda:0", "eval_mode": "slide"}
    write_record(dataclasses.replace(record, provenance=provenance), path.parent)
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    assert "## Protocol warnings" in md
    assert "rows differ in device: cpu, cuda:0" in md and "rows differ in eval_mode: slide, whole" in md


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_the_conclusion_comes_first_then_verdicts_forest_every_run_and_measured(tmp_path):
    study = fabricate(tmp_path / "results", MIOU)
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    rows = sum(len(find_pairs(build_table(study), claim)) for claim in CLAIMS)
    html = (out / "table1" / "index.html").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:5] == ["## Conclusion", "## The paper's claims: verdicts", "## Pre-registration", "## Every run",
                            "## Measured"]
    assert (out / "table1" / "figures" / "claims_forest.png").stat().st_size > 1000
    assert (out / "table1" / "figures" / "every_run.png").stat().st_size > 1000
    assert md.index("figures/claims_forest.png") < md.index("## Every run") < md.index("figures/every_run.png")
    conclusion = md[:md.index("## The paper's claims")]
    assert "What ran: 21 runs (21 completed) of 7 variants, seeds 0-2, on probe; recipe: crop 128x128; " in conclusion
    assert "trained from scratch; on cpu, CPU model not recorded, fp32 (the dtype the throughput measurement recorded)." in conclusion
    assert f"{rows} claim rows (pairs of variants that differ only in the claim's choice; one Holm family, this study's): " in conclusion
    # B1236-AVE vs FCN: seeds (62-50, 61-52, 63-51) -> 11.0
    # per-row paired t over 3 seeds at Holm's level for 13 rows: +11.0 is not enough; the zero-spread +4.00 is
    assert "- **inconclusive**: PPM beats the FCN baseline, B1236-AVE vs FCN: Δ +11.0 mIoU points" in conclusion
    assert "- **supported**: AVE beats MAX, B1236-AVE vs B1236-MAX: Δ +4.00 mIoU points" in conclusion
    assert "Did not train: none" in conclusion and "mechanism check" in conclusion
    assert "Trained from scratch" in conclusion
    for text in ("| interval (", "P(improvement)", "p (Holm)", "seeds for the paper's Δ",
                 "noise: sd of Δ (df)", "detectable Δ (80% power)",
                 "nothing is pooled across variants",
                 "<details><summary>More per claim: ", f"Holm's step-down over all {rows} claim rows",
                 "Model semantics", "`model.ppm_branch: raw`", "| branch", "mean class acc (all classes)",
                 "process peak RSS MB (includes the data cache)", "<details><summary>mIoU per seed (table)",
                 "| FCN          | 50.0     | 52.0     | 51.0     |", "How to read the numbers"):
        assert text in md, text
    assert '<td class="ok l">supported</td>' in html and '<strong class="ok">supported</strong>' in html
    assert "<details><summary>More per claim: " in html


def test_untrained_runs_and_looks_are_shown_beside_the_verdict(tmp_path):
    miou = {"FCN": [0.50, 0.52, 0.51, 0.50, 0.49, 0.5], "B1-AVE": [0.60, 0.20, 0.61, 0.59, 0.62, 0.6]}
    df = build_table(fabricate(tmp_path, miou))
    df["trained"] = [True] * 6 + [True, False, True, True, True, True]
    rows = judge_claims(df, plan=SequentialPlan(first=3, step=3, max_seeds=9))
    md = to_markdown(claim_blocks(rows, tmp_path / "figures"))
    assert "did not train [95%]" in md and "| B1-AVE: 1 of 6 [3, 56]%" in md  # Wilson, 1 of 6
    # seed 1 did not train: the second look (6 seeds) counts the 5 on which both runs trained
    assert "| 5 (look 2 of 3) " in md and "a seed counts in a row when both its runs trained" in md.lower()
    assert "compared by fisher's exact test" in md.lower()
    assert "Empty here: no per-image counts" in md


def test_bounded_intervals_bench_throughput_and_image_interval(tmp_path):
    union = 10 * np.arange(1, 61).reshape(20, 3)
    per_image = {(v, s): (union * f // 10, union) for v, f in (("FCN", 5), ("B1-AVE", 6)) for s in range(3)}
    study = fabricate(tmp_path / "results", {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.96, 1.0, 0.98]},
                      per_image=per_image)
    (study / "bench").mkdir()
    (study / "bench" / "FCN.json").write_text(json.dumps({"variant": "FCN", "throughput": {"infer_img_s": 420.0}}))
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    # pixel acc 98, 100, 99 (sd 1, one decimal): t-interval 99 +- 4.30 / sqrt(3) = [96.52, 101.48], clipped at 100
    assert "| 99.0 ± 1.0 " in md and "[96.5, 100.0]" in md and "101.5" not in md
    assert "| [10.00, 10.00] " in md  # IoU 0.6 vs 0.5 on every image: the image-level interval is a point
    assert "image-level 95% CI" in md and "Image-level interval: the evaluation images resampled" in md
    assert "two-level 95% CI" in md
    assert "Throughput of FCN comes from bench/<variant>.json" in md and "| 420.0 " in md


def test_the_index_is_sectioned_by_the_summarys_section_field(tmp_path):
    from study.report.render import SUMMARY_FILE, render_index

    # the section field decides, not the data's words: a real data set whose name starts with "probe" stays real
    for name, data, section in (("zprobe", "probe (2000 training)", "probe"), ("areal", "probes-of-streets", "real")):
        (tmp_path / name).mkdir()
        (tmp_path / name / SUMMARY_FILE).write_text(json.dumps({"description": name, "conclusion": "c", "data": data,
                                                                "section": section}))
    render_index(tmp_path, [("zprobe", ""), ("areal", "")])
    text = (tmp_path / "index.md").read_text()
    real, probe = text.split("## Mechanism checks on the context probe")
    assert "## Real data" in real and "[areal]" in real and "[zprobe]" not in real and "[zprobe]" in probe
    assert "each study one Holm family" in probe


@pytest.mark.slow  # a couple of seconds: the full suite runs it
def test_many_seeds_print_per_seed_tables_ten_seeds_wide(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5 + i / 1000 for i in range(12)],
                                             "B1-AVE": [0.6 + i / 1000 for i in range(12)]})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    assert "mIoU per seed (table, seeds 0-9)" in md and "mIoU per seed (table, seeds 10, 11)" in md
    assert "| seed 9 " in md and "| seed 10 " in md and "seed 9   | seed 10" not in md
    assert not (out / "table1" / "every_run.csv").exists()  # up to SEEDS_INLINE seeds the tables stay inline


@pytest.mark.slow
def test_more_seeds_than_inline_tables_take_write_one_csv_beside_the_report(tmp_path):
    """Above SEEDS_INLINE seeds the per-seed values go to every_run.csv (one row per seed), linked, not folded."""
    from study.report.measured import SEEDS_INLINE

    n = SEEDS_INLINE + 1
    study = fabricate(tmp_path / "results", {"FCN": [0.5 + (i % 7) / 100 for i in range(n)],
                                             "B1-AVE": [0.6 + (i % 5) / 100 for i in range(n - 1)]})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    md = (out / "table1" / "index.md").read_text()
    assert "mIoU per seed (table" not in md
    assert f"mIoU per seed: [every_run.csv](every_run.csv), one row per seed ({n})" in md
    assert '<a href="every_run.csv">every_run.csv</a>' in (out / "table1" / "index.html").read_text()
    first = (out / "table1" / "every_run.csv").read_bytes()
    lines = first.decode().splitlines()
    # sd over seeds of 50..56 points is about 2: one decimal; B1-AVE has no seed 30
    assert lines[:3] == ["seed,FCN,B1-AVE,did not train", "0,50.0,60.0,", "1,51.0,61.0,"]
    assert lines[-1] == f"{n - 1},{50 + (n - 1) % 7:.1f},," and len(lines) == n + 1
    assert report_main([str(study), "--out", str(out)]) == 0
    assert (out / "table1" / "every_run.csv").read_bytes() == first


def test_every_run_blocks_switch_to_the_csv_above_the_inline_seeds(tmp_path):
    """every_run_blocks on a hand-made summary: SEEDS_INLINE seeds fold inline, one more writes the file, with the
    run that did not train named in its row."""
    import pandas as pd

    from study.report.measured import SEEDS_INLINE, every_run_blocks

    def summary(n):
        return pd.DataFrame([{"variant": v, "n": n, "miou_seeds": list(range(n)), "miou_std": 0.5,
                              "miou_values": [base + s / 100 for s in range(n)], "miou_mean": base,
                              "miou_ci_low": base - 1, "miou_ci_high": base + 1} for v, base in (("A", 50), ("B", 60))])

    inline = every_run_blocks(summary(SEEDS_INLINE), [("B", 2)], tmp_path / "small" / "figures")
    assert [b.fold for b in inline if b.kind == "table"] == [f"mIoU per seed (table, seeds {a}-{a + 9})"
                                                             for a in (0, 10, 20)]
    assert "60.02 (did not train)" in inline[2].rows[1] and not (tmp_path / "small" / "every_run.csv").exists()
    big = every_run_blocks(summary(SEEDS_INLINE + 1), [("B", 2)], tmp_path / "big" / "figures")
    assert [b.kind for b in big] == ["heading", "figure", "text"] and "[every_run.csv](every_run.csv)" in big[2].text
    lines = (tmp_path / "big" / "every_run.csv").read_text().splitlines()
    assert lines[:4] == ["seed,A,B,did not train", "0,50.00,60.00,", "1,50.01,60.01,", "2,50.02,60.02,B"]


def test_the_throughput_protocol_is_the_per_variant_benchmarks(tmp_path):
    """Runs of a per-variant study do not time themselves: the protocol line comes from bench/<variant>.json."""
    study = fabricate(tmp_path / "results", {"FCN": [0.50, 0.52, 0.51], "B1-AVE": [0.56, 0.57, 0.58]})
    (study / "bench").mkdir()
    for variant in ("FCN", "B1-AVE"):
        (study / "bench" / f"{variant}.json").write_text(json.dumps({"variant": variant, "throughput": {
            "train_img_s": 10.0, "infer_img_s": 40.0, "protocol": "synthetic input 8x8, 1 warm-up", "batch_size": 4,
            "dtype": "bfloat16", "channels_last": True, "compile": False, "device": "cpu"}}))
    write_table(study)
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    assert ("Throughput protocol: synthetic input 8x8, 1 warm-up; batch 4, bfloat16, channels_last True, compile "
            "False, device cpu, torch threads torch default;") in (out / "table1" / "index.md").read_text()


def test_the_index_says_how_many_holm_families_it_reports():
    from study.report.render import families_text

    text = families_text(claims=3, rows=31, controls=1)
    assert text.startswith("Multiplicity: these reports hold 3 Holm families of claim rows (31 rows in all), one "
                           "per study, and 1 controls study with comparisons of its own (Bonferroni within each).")
    assert "scanning all 4 families could expect up to 0.2 false verdicts in total" in text
    assert families_text(0, 0, 0) == "No study here judges a claim."
