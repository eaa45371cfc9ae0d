"""The documents speak to users only: README.md and docs/*.md say nothing of how the project
was developed (sessions, lent machines, issue numbers) and name no folder of the development
machines, which a user does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FORBIDDEN: dict[str, str] = {
    r"\bsessions?\b": "the sessions that developed the project",
    r"\blent\b|\blending\b|\blend\b": "machines lent to the developers",
    r"\bthe issue\b|\bissues? #?\d+|\bthis issue\b|\bthe issue's\b": "the project's issues",
    r"\.\./shared|/work/|\bshared/data\b": "the development machines' folders",
}
"""What no user document may say (a regular expression, case-insensitive) and why."""


def _hits(text: str, pattern: str) -> list[str]:
    return [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if re.search(pattern, line, re.IGNORECASE)
    ]


@pytest.mark.parametrize("pattern", FORBIDDEN, ids=list(FORBIDDEN.values()))
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_user_documents_do_not_mention(doc: Path, pattern: str) -> None:
    hits = _hits(doc.read_text(), pattern)
    assert not hits, f"{doc.relative_to(REPO)} mentions {FORBIDDEN[pattern]}:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("measured in the second session", r"\bsessions?\b"),
        ("GPUs lent to the sessions", r"\blent\b|\blending\b|\blend\b"),
        ("the issue's earlier run", r"\bthe issue\b|\bissues? #?\d+|\bthis issue\b"),
        ("see issue 19", r"\bthe issue\b|\bissues? #?\d+|\bthis issue\b"),
        ("DATA_URL=file://../shared/data/cifar10.tgz", r"\.\./shared|/work/|\bshared/data\b"),
    ],
)
def test_the_patterns_catch_what_they_forbid(text: str, pattern: str) -> None:
    assert _hits(text, pattern)
