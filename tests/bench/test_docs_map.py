"""docs/benchmarks.md's "Which file produces which row" cannot go stale against ``bench/``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

BENCH = REPO / "bench"
DOC = REPO / "docs" / "benchmarks.md"
MODULES = sorted(BENCH.glob("*.py"))


def _map_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## Which file produces which row\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _table_names() -> set[str]:
    rows = [line for line in _map_section().splitlines() if line.startswith("|")]
    return set(re.findall(r"bench/(\w+\.py)", "\n".join(rows)))


def _has_entry_point(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    if path.name == "__main__.py":
        return True
    named_main = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
    guarded = 'if __name__ == "__main__":' in path.read_text()
    return named_main or guarded


def test_the_table_names_bench_modules() -> None:
    assert _table_names(), "no bench/*.py named in the table"


@pytest.mark.parametrize("name", sorted(_table_names()))
def test_every_module_in_the_table_exists(name: str) -> None:
    assert (BENCH / name).is_file(), f"docs/benchmarks.md names bench/{name}, which is gone"


@pytest.mark.parametrize("path", [p for p in MODULES if _has_entry_point(p)], ids=lambda p: p.name)
def test_every_bench_command_is_in_the_table(path: Path) -> None:
    assert path.name in _table_names(), (
        f"bench/{path.name} can be run but no row of docs/benchmarks.md's "
        "'Which file produces which row' names it"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_every_bench_module_opens_with_what_it_produces(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    opening = doc.split("\n\n")[0]
    produces = r"\b(row|rows|figure|column|study)\b|docs/(benchmarks|search)\.md"
    assert re.search(produces, opening, re.IGNORECASE), (
        f"bench/{path.name}'s docstring should open with the row or figure it produces "
        f"(or 'No figure'): {opening!r}"
    )
