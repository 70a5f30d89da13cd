"""Code shape: no function in study/ runs longer than about a screen (def to its last line)."""

import ast
from pathlib import Path

STUDY = Path(__file__).resolve().parents[1] / "study"
MAX_LINES = 80


def long_functions(root: Path = STUDY, limit: int = MAX_LINES) -> list[str]:
    """'path:line name (n lines)' of every function or method longer than `limit` lines, decorators excluded."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_in_study_is_longer_than_80_lines():
    assert not long_functions(), f"split these (at most {MAX_LINES} lines each): {long_functions()}"


def test_the_check_finds_a_long_function(tmp_path):
    (tmp_path / "study").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    (tmp_path / "study" / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}")
    assert long_functions(tmp_path / "study") == ["study/m.py:5 long (81 lines)"]
