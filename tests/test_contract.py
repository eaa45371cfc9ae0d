"""docs/contract.md says what job/contract.py says: every variable, code, event and file."""

from __future__ import annotations

import json
import re

import pytest

from job import contract
from tests.conftest import REPO

DOC = (REPO / "docs" / "contract.md").read_text()


def _section(heading: str) -> str:
    """The text under ``heading`` (a markdown heading line) up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = DOC.index(f"\n{heading}\n") + len(heading) + 2
    end = DOC.find(f"\n{level} ", start)
    return DOC[start : end if end >= 0 else None]


def _rows(section: str) -> dict[str, list[str]]:
    """A markdown table's rows, keyed by their first cell (backticks stripped)."""
    rows = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|--") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("var", contract.VARIABLES, ids=lambda v: v.name)
def test_every_variable_is_documented_with_its_default_and_meaning(var) -> None:
    row = _rows(_section("## Variables"))[var.name]
    assert row[0] == (f"`{var.default}`" if var.default else "(empty)")
    assert row[1] == var.help


def test_the_doc_lists_no_variable_the_job_lacks() -> None:
    table = _rows(_section("## Variables"))
    assert set(table) - {"variable"} == contract.VARIABLE_NAMES


@pytest.mark.parametrize(
    ("heading", "code"),
    [("## Exit codes of the job", code) for code in contract.ExitCode]
    + [("## Exit codes of the search driver", code) for code in contract.DriverExit],
    ids=lambda x: x if isinstance(x, str) else f"{type(x).__name__}.{x.name}",
)
def test_every_exit_code_is_documented_by_value_and_name(heading, code) -> None:
    row = _rows(_section(heading))[str(int(code))]
    assert row[0] == f"`{code.name}`"


@pytest.mark.parametrize(
    ("heading", "codes"),
    [
        ("## Exit codes of the job", contract.ExitCode),
        ("## Exit codes of the search driver", contract.DriverExit),
    ],
    ids=["job", "driver"],
)
def test_the_doc_lists_no_exit_code_that_does_not_exist(heading, codes) -> None:
    documented = set(_rows(_section(heading))) - {"code"}
    assert documented == {str(int(c)) for c in codes}


@pytest.mark.parametrize("name", sorted(contract.EVENTS))
def test_every_event_has_an_example_with_exactly_its_fields(name) -> None:
    kind = contract.EVENTS[name]
    block = re.search(r"```json\n(.*?)\n```", _section(f"### `{name}`"), re.S)
    assert block is not None, f"no JSON example under ### `{name}`"
    example = json.loads(block.group(1))
    assert example["v"] == contract.EVENT_VERSION and example["event"] == name
    assert kind.__required_keys__ <= set(example) <= kind.__required_keys__ | kind.__optional_keys__


@pytest.mark.parametrize("name", [*contract.OUTPUTS, contract.JOB_LOG])
def test_every_output_file_is_documented(name) -> None:
    assert name in _rows(_section("## Output layout"))


@pytest.mark.parametrize("name", [*contract.PROMOTED, *contract.ARTIFACTS])
def test_promoted_and_uploaded_files_are_named_in_the_layout(name) -> None:
    assert f"`{name}`" in _section("## Output layout")
