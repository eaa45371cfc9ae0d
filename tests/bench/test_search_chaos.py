"""The chaos soak's short schedule: a 12-trial study, 3 drivers, a fresh PostgreSQL, every
kind of fault once; the soak's own checks must all pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.postgres import PostgresMissing, _bin_dir
from tests.bench.commands import run_module
from tests.conftest import need

KINDS = (
    "hang",
    "memory exit 5",
    "kill trial",
    "kill driver",
    "remove output folder",
    "restart PostgreSQL",
)


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    try:
        _bin_dir()
    except PostgresMissing as exc:
        need(False, str(exc))
    out: Path = tmp_path_factory.mktemp("chaos")
    proc = run_module(
        "bench.search_chaos",
        "--schedule",
        "short",
        "--trials",
        "12",
        "--output",
        str(out),
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_every_check_of_the_short_chaos_soak_passes(soak: tuple[int, str]) -> None:
    code, output = soak
    assert code == 0, output
    checks = [line for line in output.splitlines() if line.startswith("| ") and " | " in line]
    assert not [line for line in checks if "| FAIL |" in line], output


@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_struck_and_what_the_search_did_is_named(
    soak: tuple[int, str], kind: str
) -> None:
    _, output = soak
    rows = [line for line in output.splitlines() if line.startswith(f"| {kind} |")]
    assert rows, output
    outcome = rows[0].rstrip(" |").rsplit(" | ", 1)[1]
    assert outcome and not outcome.startswith("not struck"), rows[0]
