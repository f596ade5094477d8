"""The code base is ruff clean (configuration in pyproject.toml), and the gateware reads in
functions of a screen or two."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    result = subprocess.run([ruff, "check", "--no-cache", "golden", "hw", "sim", "host",
                             "fpga", "tests", "benchmarks"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# The gateware's functions are at most about 150 lines (docs/architecture.md: each engine a
# component, `elaborate` the wiring of the block diagram).
MAX_GATEWARE_FUNCTION_LINES = 150


def _functions(folder: str) -> list[tuple[int, str]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1,
                              f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return found


def test_no_long_function_in_the_gateware():
    functions = _functions("hw") + _functions("fpga")
    assert len(functions) > 100, "the walk found the gateware's functions"
    longest = max(functions)
    print(f"longest function in hw/ and fpga/: {longest[0]} lines, {longest[1]}")
    too_long = [f"{name} ({lines} lines)" for lines, name in functions
                if lines > MAX_GATEWARE_FUNCTION_LINES]
    assert not too_long, "functions too long: " + ", ".join(too_long)
