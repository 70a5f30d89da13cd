"""The search package's seams: its modules import one another without a circle (spawning lives in supervise.py,
planning in placement.py, so the runner and the SLURM node both use them and neither imports the other)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "study" / "search"


def imports_of(path: Path) -> set[str]:
    """The study.search modules a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.removeprefix("study.search.") for n in names if n.startswith("study.search.")}
    return found


def test_the_search_modules_import_without_a_circle():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    graph = {m: imports_of(PACKAGE / f"{m}.py") & modules for m in modules}
    assert "runner" not in graph["slurm"] and "slurm" in graph["runner"]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, (*path, module))
        done.add(module)

    for module in sorted(modules):
        visit(module, ())
