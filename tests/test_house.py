"""The house rules that keep the code readable (issue 19), checked on every run.

- no Python file over MAX_FILE_LINES lines and no function over MAX_FUNCTION_LINES lines;
- no import from a stage up into `dreamgen/commands/` (only the CLI mounts the commands).

IDM_dump/ holds scripts that mirror the reference repository's layout and flags; it is excepted.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
EXCEPTED = ("IDM_dump/",)


def _python_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        files = [ROOT / f for f in out]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist)
        files = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts]
    return sorted(p for p in files if p.is_file() and not str(p.relative_to(ROOT)).startswith(EXCEPTED))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_long_files():
    long = {str(p.relative_to(ROOT)): n for p in _python_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_long_functions():
    long = {}
    for p in _python_files():
        for name, line, n in _functions(ast.parse(p.read_text(encoding="utf-8"))):
            if n > MAX_FUNCTION_LINES:
                long[f"{p.relative_to(ROOT)}:{line} {name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_only_the_cli_imports_commands():
    offenders = []
    for p in sorted((ROOT / "dreamgen").rglob("*.py")) + sorted((ROOT / "dreamgenbench").rglob("*.py")):
        rel = p.relative_to(ROOT)
        if rel.parts[:2] == ("dreamgen", "commands") or rel == Path("dreamgen/cli.py"):
            continue
        if any(m == "dreamgen.commands" or m.startswith("dreamgen.commands.")
               for m in _imported_modules(ast.parse(p.read_text(encoding="utf-8")))):
            offenders.append(str(rel))
    assert not offenders, f"stage code importing dreamgen.commands: {offenders}"
