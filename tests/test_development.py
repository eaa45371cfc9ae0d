"""docs/development.md's "Where to change what" names only files that exist, and its map
covers each kind of change a contributor makes."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

DOC = REPO / "docs" / "development.md"

KINDS = ("a job variable", "a search option", "a launcher", "an output file", "an event")
"""The changes the map must cover."""

_PATH = re.compile(r"`((?:job|search|bench|testkit|tests|docs|k8s|\.ci)/[^`\s]*)`")
"""A backticked path in the project: `search/options.py`, `tests/search/launchers/`."""


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## Where to change what")
    return text[start : text.index("\n## ", start + 1)]


def paths_named(text: str) -> set[str]:
    """The project paths ``text`` names in backticks, templates (``<name>``) left out."""
    return {path for path in _PATH.findall(text) if "<" not in path}


def test_every_named_path_exists() -> None:
    named = paths_named(_section())
    assert len(named) > 20
    assert sorted(path for path in named if not (REPO / path).exists()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_map_has_a_row_for(kind: str) -> None:
    rows = [line for line in _section().splitlines() if line.startswith(f"| {kind} ")]
    assert rows, f"no map row for {kind}"
    assert paths_named(rows[0]), f"the row for {kind} names no file"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`job/plan.py` and `search/launchers/`", {"job/plan.py", "search/launchers/"}),
        ("`search/launchers/<name>.py`", set()),
        ("`make test`, `python -m job`", set()),
    ],
    ids=["paths", "template", "commands"],
)
def test_paths_are_read_from_backticks(text: str, expected: set[str]) -> None:
    assert paths_named(text) == expected
