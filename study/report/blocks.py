"""Report content as blocks (heading, text, table, figure, list, code), written as Markdown and as HTML.

Every string from configs or data is escaped in the HTML. No timestamps: the same blocks give the same bytes.
Inline markup in text and list items: **bold** (a verdict word in bold is coloured in the HTML), `code` and
[a link](relative/path).
A table with `fold` set is collapsed under that summary (<details>, in both files).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate


@dataclass(frozen=True)
class Block:
    kind: str  # heading | text | table | figure | list | code
    text: str = ""
    level: int = 2
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    fold: str = ""  # a table collapsed under this summary line


PRECISION_RULE = ("Numbers are printed at the precision their noise supports: a mean and its interval to one "
                  "decimal when the spread over seeds (sd) is 1 to 10 points, to none at 10 or more, to two below 1 "
                  "or where there is no spread to go by (one seed); a difference likewise by the sd of its paired "
                  "differences, or where a row does not carry it by its interval's half-width; an interval shown without its difference "
                  "(image-level, two-level) by its own half-width.")


def decimals(noise: float) -> int:
    """Decimals that a number with this noise (an sd or an interval's half-width, same unit) supports."""
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 1:
        return 2
    return 0 if noise >= 10 else 1


def fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _unsigned_zero(v: float, digits: int) -> float:
    return 0.0 if round(v, digits) == 0 else v


def signed(v: float, digits: int = 2) -> str:
    """A difference with its sign: +1.2, -0.4; 0 (no sign) where it rounds to zero."""
    if math.isnan(v):
        return ""
    return "0" if round(v, digits) == 0 else f"{v:+.{digits}f}"


def pm(mean: float, std: float) -> str:
    """mean ± sd at the precision the sd supports."""
    if math.isnan(mean):
        return ""
    d = decimals(std)
    return f"{mean:.{d}f} ± {std:.{d}f}" if not math.isnan(std) else f"{mean:.{d}f}"


def ci(lo: float, hi: float, digits: int = 2) -> str:
    if math.isnan(lo):
        return ""
    return f"[{_unsigned_zero(lo, digits):.{digits}f}, {_unsigned_zero(hi, digits):.{digits}f}]"


def own_ci(lo: float, hi: float) -> str:
    """An interval at the precision of its own half-width."""
    return "" if math.isnan(lo) else ci(lo, hi, decimals((hi - lo) / 2))


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"{'#' * b.level} {b.text}")
        elif b.kind == "text":
            parts.append(b.text)
        elif b.kind == "table":
            table = tabulate(b.rows, headers=b.headers, tablefmt="github", disable_numparse=True)
            parts.append(f"<details><summary>{b.fold}</summary>\n\n{table}\n\n</details>" if b.fold else table)
        elif b.kind == "figure":
            parts.append(f"![{b.text}]({b.items[0]})")
        elif b.kind == "list":
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "code":
            parts.append(f"```bash\n{b.text}\n```")
    return "\n\n".join(parts) + "\n"


# colours of a verdict (or a control's "as implied?") by the start of its text
TONES = (("too few seeds", "none"), ("no decision", "none"), ("supported", "ok"), ("yes", "ok"), ("equivalent", "ok"),
         ("contradicted", "bad"), ("no", "bad"), ("inconclusive", "open"), ("undecided", "open"))
TONED_HEADERS = ("verdict", "as implied?", "claims rule", "as implied? (claims rule)")

CSS = ("body{font-family:system-ui,sans-serif;font-size:15px;line-height:1.45;max-width:1200px;margin:1.5em auto;"
       "padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}"
       ".tw{overflow-x:auto;max-width:100%}"
       "table{border-collapse:collapse;font-size:13px;margin:.8em 0}th,td{border:1px solid #ccc;padding:3px 6px;"
       "text-align:right;white-space:nowrap}th{background:#f3f3f3;white-space:normal;vertical-align:bottom}"
       "td.l,th.l{text-align:left}td.l{white-space:normal;min-width:6em}td:first-child{white-space:normal}"
       "td.ok,strong.ok{background:#d8f0d8}td.bad,strong.bad{background:#f6d5d5}"
       "td.open,strong.open{background:#fbefc8}td.none,strong.none{background:#e8e8e8}strong.ok,strong.bad,"
       "strong.open,strong.none{padding:0 .25em;border-radius:3px}"
       "details{margin:.8em 0}summary{cursor:pointer;color:#245;font-weight:600}"
       "img{max-width:100%;height:auto}figure{display:inline-block;vertical-align:top;max-width:100%;"
       "margin:1em 1.5em 1em 0}figcaption{font-size:13px;color:#555;max-width:600px}"
       "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}code{background:#f3f3f3;padding:0 .2em}"
       "li{margin:.2em 0}")


def tone(text: str) -> str:
    low = str(text).lower()
    return next((cls for word, cls in TONES if low == word or low.startswith(word + " ")
                 or low.startswith(word + ":") or low.startswith(word + ",")), "")


LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")  # [text](path), no space in the path


def inline(text: str) -> str:
    """Escaped text with **bold** (coloured when it is a verdict), `code` and [links](path)."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = LINK.sub(r'<a href="\2">\1</a>', out)

    def bold(m: re.Match) -> str:
        cls = tone(html.unescape(m.group(1)))
        return f'<strong class="{cls}">{m.group(1)}</strong>' if cls else f"<strong>{m.group(1)}</strong>"

    return re.sub(r"\*\*(.+?)\*\*", bold, out)


NUMERIC = re.compile(r"^[\[(]?\s*[-+<>]?\s*[\d.]")  # a cell that starts like a number or an interval


def _table_html(b: Block) -> str:
    """Numbers right-aligned, words left-aligned (by column), verdict columns coloured."""
    e = html.escape
    toned = {i for i, h in enumerate(b.headers) if str(h).lower() in TONED_HEADERS}
    words = {i for i in range(len(b.headers))
             if i == 0 or any(str(r[i]) and not NUMERIC.match(str(r[i])) for r in b.rows)}

    def cell(tag: str, text: Any, i: int, cls: str = "") -> str:
        classes = " ".join(c for c in (cls, "l" if i in words else "") if c)
        return f'<{tag} class="{classes}">{e(str(text))}</{tag}>' if classes else f"<{tag}>{e(str(text))}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(b.headers))
    body = ["<tr>" + "".join(cell("td", c, i, tone(str(c)) if i in toned else "") for i, c in enumerate(row))
            + "</tr>" for row in b.rows]
    table = f'<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    return f"<details><summary>{e(b.fold)}</summary>{table}</details>" if b.fold else table


def to_html(blocks: list[Block]) -> str:
    e = html.escape
    title = next((b.text for b in blocks if b.kind == "heading"), "report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{e(title)}</title>",
             f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif b.kind == "text":
            parts.append(f"<p>{inline(b.text)}</p>")
        elif b.kind == "table":
            parts.append(_table_html(b))
        elif b.kind == "figure":
            parts.append(f'<figure><img src="{e(b.items[0])}" alt="{e(b.text)}"><figcaption>{e(b.text)}'
                         "</figcaption></figure>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "code":
            parts.append(f"<pre><code>{e(b.text)}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
