"""Report blocks: numbers at the precision their noise supports, folded tables, coloured verdicts, escaping."""

import math

from study.report.blocks import Block, ci, decimals, own_ci, pm, signed, to_html, to_markdown


def test_precision_follows_the_noise():
    assert [decimals(v) for v in (0.3, 0.99, 1.0, 9.99, 10.0, 24.6, math.nan)] == [2, 2, 1, 1, 0, 0, 2]
    assert pm(64.913, 1.10) == "64.9 ± 1.1" and pm(65.98, 24.64) == "66 ± 25" and pm(67.584, 0.75) == "67.58 ± 0.75"
    assert pm(81.54, math.nan) == "81.54"  # one seed: no spread to go by
    assert ci(-0.004, 2.36, 2) == "[0.00, 2.36]" and ci(-0.27, 2.36, 0) == "[0, 2]"  # no "-0"
    assert own_ci(-0.27, 2.36) == "[-0.3, 2.4]" and own_ci(10.0, 10.0) == "[10.00, 10.00]"
    assert signed(2.673, 1) == "+2.7" and signed(-0.04, 1) == "0" and signed(math.nan) == ""


def test_folded_tables_and_coloured_verdicts():
    blocks = [Block("heading", "T <1>", level=1),
              Block("text", "**supported**: a `code` <b>"),
              Block("table", headers=["claim", "Δ", "verdict"], rows=[["a <x>", "+1.0", "contradicted"],
                                                                      ["b", "[-1, 2]", "too few seeds"]]),
              Block("table", headers=["claim", "p"], rows=[["a", "0.5"]], fold="More per claim: p")]
    md = to_markdown(blocks)
    assert "<details><summary>More per claim: p</summary>\n\n| claim   | p   |" in md and md.endswith("</details>\n")
    html = to_html(blocks)
    assert '<strong class="ok">supported</strong>: a <code>code</code> &lt;b&gt;' in html
    assert '<td class="bad l">contradicted</td>' in html and '<td class="none l">too few seeds</td>' in html
    assert '<td class="l">a &lt;x&gt;</td><td>+1.0</td>' in html  # words left, numbers right
    assert "<td>[-1, 2]</td>" in html
    assert "<details><summary>More per claim: p</summary><div class=\"tw\"><table>" in html
    assert '<meta name="viewport"' in html


def test_relative_links_in_text_and_intervals_left_alone():
    html = to_html([Block("text", "values: [every_run.csv](every_run.csv); Δ +0.5 [0.1, 0.9] (95%) <x>")])
    assert '<a href="every_run.csv">every_run.csv</a>' in html and "[0.1, 0.9] (95%) &lt;x&gt;" in html
