"""`python -m job --help` and `--variables` come from the contract (job/__main__.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from job.contract import EXIT_MEANINGS, OUTPUTS, VARIABLES
from tests.conftest import REPO, JobResult, run_job


def _job(*args: str) -> JobResult:
    """``python -m job ARGS`` in this process's environment; its output is no event stream."""
    return run_job(None, *args, timeout=120, strict=False)


@pytest.fixture(scope="module")
def help_text() -> str:
    result = _job("--help")
    assert result.code == 0, result.stderr
    return " ".join(result.stdout.split())  # click wraps lines; compare word by word


def test_variables_prints_each_default_and_meaning_as_json() -> None:
    result = _job("--variables")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {
        v.name: {"default": v.default, "help": v.help} for v in VARIABLES
    }


@pytest.mark.parametrize(("code", "meaning"), EXIT_MEANINGS.items(), ids=lambda x: str(x))
def test_help_lists_every_exit_code(help_text: str, code: int, meaning: str) -> None:
    assert f"{int(code)} {meaning}" in help_text


@pytest.mark.parametrize("name", OUTPUTS)
def test_help_lists_every_output(help_text: str, name: str) -> None:
    assert name in help_text


_NO_TORCH = """
import runpy, sys
sys.argv = ["job", "--help"]
try:
    runpy.run_module("job", run_name="__main__")
except SystemExit:
    pass
assert "torch" not in sys.modules, "--help loaded torch"
"""


def test_help_loads_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_TORCH], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
