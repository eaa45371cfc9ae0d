"""search.console: how a run ends, what it says and its exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search.console import drive
from search.exits import DriverExit
from tests.search.helpers import stub_driver


def test_a_run_past_its_timeout_says_so_and_ends_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each "low" trial takes over 1.5 s, so a 1 s timeout passes before the budget of 10.
    driver = stub_driver(tmp_path, "*=low", trials=10, timeout=1.0)
    code = drive(driver, 10, tmp_path / "out")
    said = capsys.readouterr().err
    assert code == DriverExit.DONE
    found = re.search(r"timeout reached after 1 s: (\d+) of 10 trials finished; rerun to", said)
    assert found is not None, said
    assert int(found.group(1)) == driver.finished() < 10
    assert "stopped" not in said
    assert (tmp_path / "out" / "trials.csv").is_file()  # the results are written
