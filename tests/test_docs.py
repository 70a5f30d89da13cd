"""The docs as a manual: docs/architecture.md names every module of study/, no doc carries a commit hash in its
prose (provenance lives in the run records and the reports' Provenance sections), every relative link in docs/
resolves (file and heading), package and noxfile docstrings name what they hold, and the numbers the docs quote
from a shipped report are the report's."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
STUDY = ROOT / "study"

# `abc1234`, `5093308`, commit abc1234, commits abc1234-def5678, abc1234^:path (git show)
HASH = re.compile(r"`[0-9a-f]{7,40}`|\bcommits? `?[0-9a-f]{7,40}\b|\b[0-9a-f]{7,40}\^")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def commit_hashes(path: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{n}: {m.group(0)}"
            for n, line in enumerate(path.read_text().splitlines(), 1) for m in HASH.finditer(line)]


def layout_entries(text: str) -> dict[str, str]:
    """The Layout block of docs/architecture.md: entry (a path under study/, a folder ends in /) -> its text,
    continuation lines included."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    key = None
    for line in block.splitlines():
        if line and not line[0].isspace():
            key, _, rest = line.partition(" ")
            entries[key] = rest
        elif key is not None:
            entries[key] += " " + line.strip()
    return entries


def missing_from_architecture(text: str) -> list[str]:
    entries = layout_entries(text)
    missing = []
    for path in sorted(STUDY.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        if rel in entries:
            continue
        if folder != "study/" and folder in entries and (
                path.name == "__init__.py" or re.search(rf"(?<![\w/.]){re.escape(path.name)}", entries[folder])):
            continue
        missing.append(rel)
    return missing


def test_architecture_names_every_module():
    missing = missing_from_architecture((DOCS / "architecture.md").read_text())
    assert not missing, f"docs/architecture.md's Layout does not name: {', '.join(missing)}"


def test_architecture_check_finds_a_missing_module():
    text = (DOCS / "architecture.md").read_text().replace("labelmefacade.py, ", "")
    assert "study/data/labelmefacade.py" in missing_from_architecture(text)


def test_docs_have_no_commit_hashes():
    found = [hit for path in doc_files() for hit in commit_hashes(path)]
    assert not found, "commit hashes in docs prose (link the report or record instead):\n" + "\n".join(found)


def test_hash_pattern():
    assert HASH.search("at commit `5093308`") and HASH.search("commits `eae8236`-`ab185f3`")
    assert HASH.search("git show e264019^:reports/x") and HASH.search("commit 40815fd")
    assert not HASH.search("sha256 57934424...") and not HASH.search("`100000` groups")


def test_readme_has_no_commit_hashes():
    """README.md is being rewritten elsewhere; rename to test_readme_has_no_commit_hashes once it passes."""
    found = commit_hashes(ROOT / "README.md")
    assert not found, "commit hashes in README.md:\n" + "\n".join(found)


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            out.add(github_anchor(m.group(1)))
    return out


def test_relative_links_in_docs_resolve():
    broken = []
    for path in doc_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"[a-z]+:", target):
                    continue
                file, _, anchor = target.partition("#")
                dest = (path.parent / file).resolve() if file else path
                where = f"docs/{path.name}:{n}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_results_page_links_every_shipped_report():
    text = (DOCS / "results.md").read_text()
    studies = sorted(p.parent.name for p in (ROOT / "reports").glob("*/index.md"))
    missing = [s for s in studies if f"../reports/{s}/index.md" not in text]
    assert studies and not missing, f"docs/results.md does not link: {missing}"


def test_package_docstrings_name_their_modules():
    gaps = []
    for folder in sorted(p for p in STUDY.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        init = folder / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) if init.exists() else None
        if not doc:
            gaps.append(f"{folder.relative_to(ROOT)}: no package docstring")
            continue
        for module in sorted(folder.glob("*.py")):
            if module.name != "__init__.py" and not re.search(rf"(?<![\w/.]){re.escape(module.name)}", doc):
                gaps.append(f"{folder.relative_to(ROOT)}: docstring does not name {module.name}")
    assert not gaps, "\n".join(gaps)


def test_noxfile_docstring_names_every_session():
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    doc = ast.get_docstring(tree)
    sessions = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
                and any("session" in ast.unparse(d) for d in f.decorator_list)]
    missing = [s for s in sessions if f"nox -s {s}`" not in doc]
    assert sessions and not missing, f"noxfile docstring does not name sessions: {missing}"


# numbers the docs quote from a shipped report, each with the report that must carry it
QUOTED = [
    ("context_probe.md", "aa_probe", ["11 false verdicts of 150", "7.3%", "3.7-12.7%", "4.67%", "4.76%", "4.84%",
                                      "se 0.07%"]),
    ("context_probe.md", "aa_probe_max", ["3 false verdicts of 60", "5.0%", "1.0-13.9%", "3.54%", "3.20%", "3.58%",
                                          "173", "sd 5.32", "7 of 360"]),
    ("context_probe.md", "aa_probe", ["sd 1.98", "0.24 points²", "6% of the 3.93 points²", "sd 1.92"]),
    ("statistics.md", "table1", ["-0.36", "1.0 to 2.7", "21 to 116", "+0.61"]),
    ("results.md", "aa_probe_v2", ["2.60"]),
    ("results.md", "aa_probe", ["1.98"]),
    ("results.md", "table1_v2", ["11 of 15 claim rows", "80 runs"]),
    ("results.md", "table1_v3", ["13 of 15 claim rows", "80 runs"]),
    ("results.md", "aa_probe_v3", ["1.00"]),
    ("results.md", "table1_v4", ["12 of 15 claim rows", "80 runs"]),
    ("context_probe.md", "aa_probe_v3", ["sd 1.00"]),
    ("results.md", "aa_probe_v5", ["1.38", "60 runs"]),
    ("results.md", "context_shuffle_v3", ["30 runs"]),
    ("results.md", "aa_probe_v6", ["1.05", "60 runs"]),
    ("results.md", "context_shuffle_b1_v3", ["30 runs"]),
    ("context_probe.md", "context_shuffle_b1_v3", ["4.06", "[3.45, 4.67]", "74.2", "76.7"]),
    ("context_probe.md", "table1_v3", ["+1.59"]),
    ("context_probe.md", "aa_probe_max_v3", ["4 false verdicts of 60", "6.7%", "1.8-16.2%", "5.22%", "4.86%",
                                             "4.71%", "sd 1.51", "se 0.07%"]),
    ("results.md", "aa_probe_max_v3", ["360 runs"]),
    ("context_probe.md", "context_shuffle_v3", ["-0.08", "[-0.30, 0.15]", "1.72", "[1.45, 1.99]", "7.74", "[3.80, 11.68]",
                                                "75.91", "77.47", "equivalent within ±0.5"]),
]


def test_quoted_numbers_are_the_reports():
    wrong = []
    for doc, study, snippets in QUOTED:
        doc_text = (DOCS / doc).read_text()
        report = (ROOT / "reports" / study / "index.md").read_text()
        for snippet in snippets:
            if snippet not in doc_text:
                wrong.append(f"docs/{doc} no longer quotes {snippet!r} (update QUOTED)")
            if snippet not in report.replace("3.7%-12.7%", "3.7-12.7%"):
                wrong.append(f"docs/{doc} quotes {snippet!r}, which reports/{study}/index.md does not say")
    assert not wrong, "\n".join(wrong)
