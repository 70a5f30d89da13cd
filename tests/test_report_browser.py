"""The HTML report in a real headless Chromium: it loads without errors and every figure is displayed.

Skips when Chromium is absent (CI installs Debian's chromium)."""

import re
import shutil
import subprocess

import pytest
from fabricate import fabricate  # noqa: I001

from study.report.__main__ import main as report_main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")]

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "IMAGES " + imgs.length + " BROKEN " + JSON.stringify(broken);
  document.body.appendChild(out);
});
</script>"""


def test_report_html_displays_every_figure(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": [0.5, 0.52, 0.51], "B1-AVE": [0.6, 0.61, 0.59],
                                             "B1236-AVE": [0.62, 0.63, 0.64]})
    out = tmp_path / "reports"
    assert report_main([str(study), "--out", str(out)]) == 0
    page = out / "table1" / "index.html"
    probe = page.with_name("probe.html")  # same folder: the report's relative paths resolve as in index.html
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--enable-logging=stderr",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"IMAGES (\d+) BROKEN (\[.*?\])", result.stdout)
    assert match, result.stdout[-2000:]
    assert int(match.group(1)) >= 5  # bars, pareto, curves, heatmap, qualitative strips
    assert match.group(2) == "[]"
    assert "Uncaught" not in result.stderr
