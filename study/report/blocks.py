"""Report content as blocks (heading, text, table, figure, list, code), written as Markdown and as HTML.

Every string from configs or data is escaped in the HTML. No timestamps: the same blocks give the same bytes.
"""

from __future__ import annotations

import html
import math
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


def fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.2f} ± {std:.2f}" if not math.isnan(std) else f"{mean:.2f}"


def ci(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"{'#' * b.level} {b.text}")
        elif b.kind == "text":
            parts.append(b.text)
        elif b.kind == "table":
            parts.append(tabulate(b.rows, headers=b.headers, tablefmt="github", disable_numparse=True))
        elif b.kind == "figure":
            parts.append(f"![{b.text}]({b.items[0]})")
        elif b.kind == "list":
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "code":
            parts.append(f"```bash\n{b.text}\n```")
    return "\n\n".join(parts) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;"
       "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
       "img{max-width:100%}figure{margin:1em 0}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}")


def to_html(blocks: list[Block]) -> str:
    e = html.escape
    title = next((b.text for b in blocks if b.kind == "heading"), "report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
             f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif b.kind == "text":
            parts.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "figure":
            parts.append(f'<figure><img src="{e(b.items[0])}" alt="{e(b.text)}"><figcaption>{e(b.text)}'
                         "</figcaption></figure>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "code":
            parts.append(f"<pre><code>{e(b.text)}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
