"""Progress inside an epoch (job/progress.py): lines and ``progress`` events from real jobs, and
the live bar when stderr is a terminal (a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
from pathlib import Path

import pytest

from tests.conftest import job_env, run_job, start_job

STEP_LINE = re.compile(r"^epoch (\d+)/(\d+)  step (\d+)/(\d+)  \d+ img/s  epoch ETA \d+:\d\d:\d\d$")


def _env(tmp: Path, archives: dict[str, Path], seconds: str) -> dict[str, str]:
    # 0.001 s is shorter than any step: every step reports.
    return job_env(tmp, DATA_URL=archives["python"].as_uri(), PROGRESS_SECONDS=seconds)


def test_progress_events_count_the_steps_of_each_epoch(archives, tmp_path) -> None:
    result = run_job(_env(tmp_path, archives, "0.001"))
    assert result.code == 0, result.stderr
    kinds = [e["event"] for e in result.events]
    progress = result.of("progress")
    steps = progress[0]["steps"]
    assert steps == 7  # ceil(400 / 64)
    # Each epoch's progress events come before its epoch event, steps rising.
    first_epoch = kinds.index("epoch")
    assert all(e["epoch"] == 1 for e in result.events[1:first_epoch])
    for epoch in (1, 2):
        counted = [e["step"] for e in progress if e["epoch"] == epoch]
        assert counted == sorted(counted) and counted[0] >= 1 and counted[-1] <= steps
    assert all(e["images_per_sec"] > 0 and e["seconds"] > 0 for e in progress)


def test_without_a_terminal_a_line_goes_with_each_event(archives, tmp_path) -> None:
    result = run_job(_env(tmp_path, archives, "0.001"))
    lines = [m.groups() for m in map(STEP_LINE.match, result.stderr.splitlines()) if m]
    events = [
        (str(e["epoch"]), str(e["epochs"]), str(e["step"]), str(e["steps"]))
        for e in result.of("progress")
    ]
    assert lines == events and lines


@pytest.mark.parametrize("seconds", ["0", "30"])
def test_no_progress_before_its_interval_or_when_off(archives, tmp_path, seconds) -> None:
    result = run_job(_env(tmp_path, archives, seconds))
    assert result.code == 0, result.stderr
    assert not result.of("progress")
    assert not any(STEP_LINE.match(line) for line in result.stderr.splitlines())


@pytest.mark.parametrize("text", ["-1", "soon", "nan"])
def test_a_malformed_progress_seconds_is_rejected_by_name(tmp_path, text) -> None:
    result = run_job(job_env(tmp_path, PROGRESS_SECONDS=text))
    assert result.code == 2
    assert f"PROGRESS_SECONDS={text!r} is invalid" in result.stderr


def test_on_a_terminal_stderr_shows_a_live_bar(archives, tmp_path) -> None:
    leader, follower = pty.openpty()
    proc = start_job(_env(tmp_path, archives, "0.001"), stderr=follower)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the job closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    text = screen.decode("utf-8", "replace")
    assert re.search(r"epoch 1/2 +\d+%\|", text), text
    assert not any(STEP_LINE.match(line) for line in text.splitlines())  # the bar says it
    events = [json.loads(line)["event"] for line in stdout.splitlines()]
    assert "progress" in events  # the events do not depend on the terminal
