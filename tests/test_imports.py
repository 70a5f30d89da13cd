"""Data flows one way: every import between the parts of study/ is one docs/architecture.md's table allows."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE_HEADER = "| part | may import |"


def allowed_edges() -> dict[str, set[str]]:
    """{part: the parts it may import}, read from the table in docs/architecture.md."""
    text = (REPO / "docs/architecture.md").read_text()
    rows = text[text.index(TABLE_HEADER):].split("\n\n")[0].splitlines()[2:]
    out = {}
    for row in rows:
        part, may = (cell.strip().replace("\\_", "_") for cell in row.strip("|").split("|"))
        out[part] = {p.strip() for p in may.split(",") if p.strip()}
    return out


def imports_between_parts(root: Path = REPO) -> dict[tuple[str, str], list[str]]:
    """{(part, imported part): [the files doing it]} over every import in root/study/, inside functions too."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted((root / "study").rglob("*.py")):
        part = path.relative_to(root / "study").with_suffix("").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "study"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                bits = name.split(".")
                if bits[0] == "study" and len(bits) > 1 and bits[1] != part:
                    found.setdefault((part, bits[1]), []).append(str(path.relative_to(root)))
    return found


def test_every_part_is_in_the_table():
    parts = {p.stem if p.is_file() else p.name for p in (REPO / "study").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists()
                                                                 or p.is_dir() and any(p.glob("*.py")))}
    assert parts - {"__pycache__"} == set(allowed_edges())


def test_every_import_runs_in_an_allowed_direction():
    allowed = allowed_edges()
    wrong = [f"{part} -> {other} ({', '.join(sorted(set(files)))})"
             for (part, other), files in sorted(imports_between_parts().items()) if other not in allowed[part]]
    assert not wrong, "imports the table in docs/architecture.md does not allow:\n" + "\n".join(wrong)


def test_the_check_sees_imports_inside_functions_and_from_the_package(tmp_path):
    (tmp_path / "study" / "train").mkdir(parents=True)
    (tmp_path / "study" / "train" / "loop.py").write_text(
        "import study.config\n\ndef f():\n    from study.throughput.bench import benchmark\n")
    (tmp_path / "study" / "results").mkdir()
    (tmp_path / "study" / "results" / "table.py").write_text("from study import run\n")
    found = imports_between_parts(tmp_path)
    assert found == {("train", "config"): ["study/train/loop.py"], ("train", "throughput"): ["study/train/loop.py"],
                     ("results", "run"): ["study/results/table.py"]}
    allowed = allowed_edges()
    assert "throughput" not in allowed["train"] and "run" not in allowed["results"]
