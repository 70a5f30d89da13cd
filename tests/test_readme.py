"""The README stays a product page whose statements hold: its size, its links, and every number in it checked
against what it describes."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, flags=re.M)}


def test_the_readme_is_a_product_page():
    assert len(README.splitlines()) <= 120
    top = README[:README.index("## What a report says")]
    assert "pip install nox && nox -s ablation" in top and "nox -s tests" in top
    assert not re.search(r"`[0-9a-f]{7,12}`|commit [0-9a-f]{7,12}", README)  # provenance lives in records


def test_every_link_in_the_readme_resolves():
    for target in re.findall(r"\]\(([^)]+)\)", README):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = REPO / path
        assert file.exists(), target
        if anchor:
            assert anchor in _anchors(file.read_text()), target


def test_the_numbers_in_the_readme_are_the_default_studys_and_the_rules():
    from study.results.power import POWER

    study = yaml.safe_load((REPO / "configs/studies/table1_v3.yaml").read_text())
    paper_variants = [v for v in study["variants"] if v != "FCN-CAP-DR"]
    assert "FCN-CAP-DR" in study["variants"]
    assert f"trains the {len(paper_variants)} Table 1 variants and the FCN matched to B1236-AVE-DR's capacity over " \
           f"{len(study['seeds'])} seeds" in " ".join(README.split())
    assert f"with {POWER:.0%} power" in README
    top = README.split("## What a report says")[0]
    for name in ("CVPR 2017", "Table 1", "Zen 4"):  # names, not measurements
        top = top.replace(name, "")
    # the only numbers before the report section: the Python version, the variant and seed counts, the cores, and
    # the measured times, each of which stands in docs/speed.md's table of the two commands
    speed = (REPO / "docs/speed.md").read_text()
    table = speed[speed.index("## The two commands"):].split("\n\n")[2]
    times = re.findall(r"\d+ min \d+ s", " ".join(README.split()))
    assert times and all(t in table for t in times), times
    for t in times:
        top = top.replace(t, "")
    numbers = re.findall(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w.])", top)
    assert set(numbers) <= {"3.11", str(len(paper_variants)), str(len(study["seeds"])), "2"}, numbers


def test_the_readmes_aa_figures_are_the_shipped_reports():
    import json
    import statistics

    aa = json.loads((REPO / "reports/aa_probe/summary.json").read_text())["aa"]
    rates = {r["n"]: f"{100 * r['rate']:.2f}%" for r in aa["resampled"]}
    text = " ".join(README.split())
    assert f"{aa['false']} of its {aa['n']} fixed groups decided" in text
    assert f"decides falsely {rates[3]} of the time at 3 seeds, {rates[5]} at 5 and {rates[10]} at 10" in text
    assert all(r["rate"] + 2 * r["se"] <= 0.05 for r in aa["resampled"])  # "within its 5%"
    report = json.loads((REPO / "reports/aa_probe_max/summary.json").read_text())["aa"]
    stalled = sum(k for k, _ in report["stalls"].values())
    runs = sum(n for _, n in report["stalls"].values())
    sd = {name: statistics.stdev(json.loads((REPO / f"reports/{name}/summary.json").read_text())["aa"]["differences"])
          for name in ("aa_probe", "aa_probe_v3")}
    assert (f"The twins' paired sd is {sd['aa_probe']:.2f} mIoU points on the probe's first edition and "
            f"{sd['aa_probe_v3']:.2f} on its second") in text
    assert (f"A max-pooled A/A, whose runs can stall, decided {report['false']} of {report['n']} fixed groups "
            f"({stalled} of its {runs} runs did not train: left out)") in text
