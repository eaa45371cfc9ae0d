"""Each command's ``--help`` ends with its exit codes, taken from job/contract.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from job.contract import EXIT_MEANINGS
from job.predict import PREDICT_EXIT_MEANINGS
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("module", "meanings"),
    [("job", EXIT_MEANINGS), ("job.predict", PREDICT_EXIT_MEANINGS)],
    ids=["python -m job", "resnet-job-predict"],
)
def test_help_ends_with_every_exit_code(module: str, meanings: dict) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stdout.strip().splitlines()]
    tail = lines[-len(meanings) :]
    assert tail == [f"{int(code)}  {meaning}" for code, meaning in meanings.items()]
    assert lines[-len(meanings) - 1] == "Exit codes (docs/contract.md):"
