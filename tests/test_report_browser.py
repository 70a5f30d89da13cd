"""The HTML report in a real headless Chromium: it loads without errors, every figure is displayed, and at a
laptop's 1366 px nothing scrolls sideways (tables and figures fit the page, folded tables included).

Skips when Chromium is absent (CI installs Debian's chromium). REPORT_SCREENSHOTS=<folder> keeps the screenshots.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fabricate import fabricate  # noqa: I001

from study.report.__main__ import main as report_main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")]
SHIPPED = Path(__file__).resolve().parents[1] / "reports"
LAPTOP = (1366, 768)

PROBE = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const page = document.body.clientWidth;
  const wide = Array.from(document.querySelectorAll(".tw")).filter(t => t.scrollWidth > t.clientWidth + 1)
    .map(t => t.querySelector("th").textContent + " " + t.scrollWidth + ">" + t.clientWidth);
  const big = imgs.filter(i => i.getBoundingClientRect().width > page + 1).map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "PROBE " + JSON.stringify({images: imgs.length, broken: broken, wide: wide, big: big,
    page: page, scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
    toned: document.querySelectorAll("td.ok, td.bad, td.open, td.none").length}) + " END";
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path, *args):
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--enable-logging=stderr",
         *args], capture_output=True, text=True, timeout=120)


def probe(page, tmp_path):
    """Load the page at 1366 x 768 with every <details> opened; what the probe measured."""
    probe_page = page.with_name("probe.html")  # same folder: the report's relative paths resolve as in index.html
    probe_page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium(tmp_path, f"--window-size={LAPTOP[0]},{LAPTOP[1]}", "--dump-dom", probe_page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Uncaught" not in result.stderr
    match = re.search(r"PROBE (\{.*?\}) END", result.stdout)
    assert match, result.stdout[-2000:]
    return json.loads(match.group(1))


def screenshot(page, tmp_path, name):
    """The top 3000 px of the page at 1366 px wide, kept under $REPORT_SCREENSHOTS when set."""
    shot = tmp_path / f"{name}.png"
    result = chromium(tmp_path, f"--window-size={LAPTOP[0]},3000", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.stat().st_size > 10000, result.stderr[-2000:]
    keep = os.environ.get("REPORT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def assert_fits_a_laptop(found):
    assert found["broken"] == [], found
    assert found["wide"] == [], found  # no table wider than the page, folded ones opened
    assert found["big"] == [], found  # no figure wider than the page
    assert found["scroll"] <= found["inner"], found  # the page itself does not scroll sideways


def test_report_html_displays_every_figure_and_fits_a_laptop(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-MAX": [0.3, 0.55, 0.54],
                                             "B1-AVE": [0.6, 0.61, 0.59], "B1236-AVE": [0.62, 0.63, 0.64],
                                             "B1236-AVE-DR": [0.63, 0.62, 0.64]})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    page = out / "table1" / "index.html"
    found = probe(page, tmp_path)
    assert found["images"] >= 6  # forest, every run, pareto, curves, heatmap, qualitative strips
    assert found["toned"] >= 4  # every verdict cell coloured
    assert_fits_a_laptop(found)
    screenshot(page, tmp_path, "fabricated_table1")


@pytest.mark.parametrize("name", sorted(p.parent.name for p in SHIPPED.glob("*/index.html")))
def test_shipped_reports_fit_a_laptop(tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(SHIPPED / name, copy)
    found = probe(copy / "index.html", tmp_path)
    assert found["images"] >= 4
    assert_fits_a_laptop(found)
    screenshot(copy / "index.html", tmp_path, name)
