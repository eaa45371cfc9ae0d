"""The scale bench, short: 40 trials on 2 drivers x 4 slots (PostgreSQL) and 40 trials on
1 driver x 4 slots (SQLite), each a real ``python -m search run`` measured from outside; the
study keeps its budget, every trial's events are recorded, and every figure is measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.search_scale import STEP, per_trial_cpu
from testkit.postgres import available
from tests.bench.commands import run_module
from tests.conftest import need

TRIALS, DRIVERS, SLOTS = 40, 2, 4

FIGURES = ("cpu_first", "cpu_last", "trial_seconds_first", "trial_seconds_last")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def row(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend: str = request.param
    if backend == "postgresql":
        found, why = available()
        need(found is not None, why)
    out: Path = tmp_path_factory.mktemp(f"scale-{backend}")
    report = out / "report.json"
    proc = run_module(
        "bench.search_scale",
        "--backends", backend, "--pg-trials", str(TRIALS), "--sqlite-trials", str(TRIALS),
        "--drivers", str(DRIVERS), "--slots", str(SLOTS), "--output", str(out / "run"),
        "--json", str(report),
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(report.read_text())
    return result, result["rows"][0]


def test_the_study_keeps_its_budget(row: Any) -> None:
    _, r = row
    workers = r["drivers"] * r["slots"]
    assert TRIALS <= r["finished"] <= TRIALS + workers - 1, r["states"]
    assert r["finished_ok"]
    assert r["driver_exits"] == [0] * r["drivers"]
    assert r["states"].get("RUNNING", 0) == 0 and r["states"].get("WAITING", 0) == 0


def test_every_finished_trial_has_its_events_recorded(row: Any) -> None:
    _, r = row
    assert r["events_missing"] == []


@pytest.mark.parametrize("figure", FIGURES)
def test_each_figure_is_measured(row: Any, figure: str) -> None:
    _, r = row
    assert r[figure]["median"] > 0
    assert r[figure]["p95"] >= r[figure]["median"]


def test_cpu_share_and_curve_are_measured(row: Any) -> None:
    result, r = row
    assert r["cpu_seconds_per_finished_trial"] > 0
    assert len(r["cpu_share"]) == r["drivers"] and all(s > 0 for s in r["cpu_share"])
    assert len(r["cpu_curve"]) == (r["finished"] - 1) // STEP
    assert result["machine"]


def test_postgresql_statements_and_connections_are_counted(row: Any) -> None:
    _, r = row
    if r["backend"] != "postgresql":
        assert "connections" not in r and "statements_per_finished_trial" not in r
        return
    assert r["statements_per_finished_trial"] > 0
    assert r["connections"]["max"] >= r["drivers"]


def test_cpu_per_trial_is_the_cpu_between_completions_over_the_trials() -> None:
    samples = [(0.0, 0.0), (10.0, 10.0), (20.0, 30.0)]  # 1 CPU s/s, then 2
    done = [float(t) for t in range(0, 21)]  # a trial completed every second
    assert per_trial_cpu(samples, done) == pytest.approx([1.0, 2.0])
