"""The chaos soak (tests/soak/chaos.py): the search under real faults loses nothing.

The short variant (12 trials, 3 drivers, one trial kill and every other fault once) runs in
every test run; the long one (60 trials, four trial kills) only with ``make soak``, and
leaves its report in ``output/soak-chaos/`` (``chaos.md``, ``chaos.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit import REPO
from testkit.postgres import available
from tests.conftest import need
from tests.soak.chaos import Plan, soak, table

KINDS = (
    "hang",
    "memory exit 5",
    "kill trial",
    "kill driver",
    "remove output folder",
    "restart PostgreSQL",
)


def _soak(plan: Plan, out: Path) -> dict[str, Any]:
    found, why = available()
    need(found is not None, why)
    return soak(plan, out)


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _soak(Plan(trials=12, trial_kills=1), tmp_path_factory.mktemp("chaos"))


def test_every_check_of_the_short_soak_passes(short: dict[str, Any]) -> None:
    assert all(c["passed"] for c in short["checks"]), table(short)


@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_struck_and_what_the_search_did_is_named(
    short: dict[str, Any], kind: str
) -> None:
    fault = next(f for f in short["faults"] if f["kind"] == kind)
    assert fault["outcome"] and not fault["outcome"].startswith("not struck"), table(short)


@pytest.mark.soak
def test_the_long_soak_passes_every_check() -> None:
    result = _soak(Plan(), REPO / "output" / "soak-chaos")
    print(table(result))
    assert all(c["passed"] for c in result["checks"]), table(result)
    assert all(not f["outcome"].startswith("not struck") for f in result["faults"]), table(result)
