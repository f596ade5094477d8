"""The README's Python API example runs as written (on the Verilator backend)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_api_example_runs():
    text = README.read_text()
    section = text[text.index("## Python API"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["acc"].last_stats.operation == "mx_matmul"
    assert namespace["c"].shape == (37, 29)
