"""The house rules on imports, checked on the source: core/ is pure Python, and nothing uses Streamlit's internals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").rglob("*.py"), *(ROOT / "core").glob("*.py")])
CORE_FILES = sorted((ROOT / "core").glob("*.py"))
INTERNALS = ("streamlit.runtime", "streamlit.web")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, including `from x import y` as x.y and x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


@pytest.mark.parametrize("path", APP_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_streamlit_internals(path):
    bad = [f"line {line}: {module}" for line, module in imported_modules(path)
           if any(is_under(module, internal) for internal in INTERNALS)]
    assert not bad, f"{path.name} imports Streamlit internals (use the public st.* API): {bad}"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_core_never_imports_streamlit(path):
    bad = [f"line {line}: {module}" for line, module in imported_modules(path) if is_under(module, "streamlit")]
    assert not bad, f"{path.name} imports streamlit; core/ must stay pure Python: {bad}"


def test_the_checks_see_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom streamlit.runtime import scriptrunner\nimport streamlit.web.cli\n")
    modules = [module for _, module in imported_modules(sample)]
    assert any(is_under(module, "streamlit.runtime") for module in modules)
    assert any(is_under(module, "streamlit.web") for module in modules)
