"""Progress lines while a study runs, and the summary at its end (stand-in job, real
processes, SQLite)."""

from __future__ import annotations

import json
import re

import pytest

from search.progress import Progress, duration
from search.report import summary_table, write_best
from tests.search.helpers import stub_driver as _driver

LINE = re.compile(
    r"^(?P<k>\d+)/(?P<n>\d+) finished \| trial (?P<trial>\d+) (?P<state>[A-Z]+)"
    r"(?P<detail>.*), (?P<epochs>\d+) epochs? in (?P<seconds>[\d.]+ s|\d+m\d+s)"
    r"( \| best trial (?P<best>\d+) val_acc (?P<best_acc>[\d.]+))? \| ETA (?P<eta>.+)$"
)


@pytest.fixture
def progress_run(tmp_path) -> tuple[list[str], object]:
    """A 3-trial study whose second trial diverges; the progress lines it printed."""
    driver = _driver(tmp_path, "1=exit4,3=low,*=done", trials=3, pruner="none")
    lines: list[str] = []
    driver.run(on_trial=Progress(driver.study, 3, lines.append))
    return lines, driver


def test_one_line_per_recorded_trial(progress_run) -> None:
    lines, driver = progress_run
    assert len(lines) == len(driver.study.trials) == 4
    assert all(LINE.match(line) for line in lines), lines


def test_lines_count_finished_trials_against_the_budget(progress_run) -> None:
    lines, _ = progress_run
    assert [LINE.match(line)["k"] for line in lines] == ["1", "1", "2", "3"]
    assert {LINE.match(line)["n"] for line in lines} == {"3"}


def test_lines_name_the_trial_its_state_and_val_acc(progress_run) -> None:
    lines, _ = progress_run
    first, failed, _, last = (LINE.match(line) for line in lines)
    assert (first["trial"], first["state"], first["detail"]) == ("0", "COMPLETE", " val_acc 0.7000")
    assert failed["state"] == "FAIL"
    assert "exit 4" in failed["detail"]
    assert (last["trial"], last["detail"], last["epochs"]) == ("3", " val_acc 0.2200", "2")


def test_lines_carry_the_best_so_far_and_an_eta(progress_run) -> None:
    lines, _ = progress_run
    last = LINE.match(lines[-1])
    assert (last["best"], last["best_acc"]) == ("0", "0.7000")
    assert last["eta"] == "0 s (budget met)"
    assert LINE.match(lines[0])["eta"] != "unknown yet"  # one finished: a pace exists


def test_summary_table_ranks_the_best_and_shows_the_baseline_against_it(progress_run) -> None:
    _, driver = progress_run
    table = summary_table(driver.study).splitlines()
    header, *rows = table
    assert header.split()[:4] == ["trial", "val_acc", "vs_best", "epochs"]
    assert [row.split()[:4] for row in rows] == [
        ["1", "0", "0.7000", "+0.0000"],
        ["2", "2", "0.7000", "+0.0000"],
        ["3", "3", "0.2200", "-0.4800"],
        ["baseline", "0", "0.7000", "+0.0000"],
    ]


def test_best_params_json_carries_the_baseline_and_the_improvement(tmp_path) -> None:
    driver = _driver(tmp_path, "0=low,*=done", trials=2, pruner="none")
    driver.run()
    write_best(driver.study, tmp_path / "results")
    best = json.loads((tmp_path / "results" / "best_params.json").read_text())
    assert best["baseline"] == {"trial": 0, "val_acc": pytest.approx(0.22)}
    assert best["improvement"] == pytest.approx(0.70 - 0.22)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0.4 s"), (42.2, "42 s"), (307, "5m07s"), (3 * 3600 + 5 * 60, "3h05m")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
