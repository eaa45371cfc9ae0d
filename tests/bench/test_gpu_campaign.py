"""``python -m bench --gpu`` (the GPU campaign): the dry run does every step on the CPU;
failures are recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.gpu import STEPS, results_table
from bench.gpu_steps import DRY, REAL, Sizes
from tests.bench.commands import run_module
from tests.conftest import REPO

ALL_STEPS = ["wheels", *(s.name for s in STEPS)]
HEADER = "| figure | tutorial | job | speed-up | target |"


def _campaign(*args: str) -> subprocess.CompletedProcess[str]:
    # One BLAS thread per process: the dry run starts several jobs on a small machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_module("bench", "--gpu", *args, env=env)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One whole dry run: its exit code, stdout and campaign.json."""
    out = tmp_path_factory.mktemp("campaign")
    proc = _campaign("--dry-run", "--out", str(out))
    record = json.loads((out / "campaign.json").read_text())
    return {"code": proc.returncode, "stdout": proc.stdout, "record": record, "out": out}


@pytest.mark.slow
def test_dry_run_exits_0(dry_run: dict[str, Any]) -> None:
    assert dry_run["code"] == 0, dry_run["stdout"]


@pytest.mark.slow
@pytest.mark.parametrize("step", ALL_STEPS)
def test_dry_run_step_is_ok(dry_run: dict[str, Any], step: str) -> None:
    record = dry_run["record"]["steps"][step]
    assert record["status"] == "ok", record


@pytest.mark.slow
@pytest.mark.parametrize("step", [s.name for s in STEPS])
def test_dry_run_step_leaves_its_log_and_its_status(dry_run: dict[str, Any], step: str) -> None:
    assert (dry_run["out"] / "logs" / f"{step}.log").is_file()
    assert f" {step} ok (" in dry_run["stdout"]


@pytest.mark.slow
def test_dry_run_compiles(dry_run: dict[str, Any]) -> None:
    # COMPILE=1 really compiles on the CPU: its first epoch holds the compile time (most of a
    # minute with an empty inductor cache, a second or two with a warm one), well beyond the
    # eager run's first-epoch warm-up (a fraction of a second).
    steps = dry_run["record"]["steps"]
    compiling = steps["job_compile"]["result"]["first_epoch_extra_seconds"]
    assert compiling > max(0.5, 2 * steps["job"]["result"]["first_epoch_extra_seconds"])


@pytest.mark.slow
def test_dry_run_prints_the_docs_table_filled(dry_run: dict[str, Any]) -> None:
    lines = [ln for ln in dry_run["stdout"].splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| " + f for f in _doc_figures(DRY)]
    assert not any("not run" in ln or "failed" in ln for ln in lines)


def _doc_figures(sizes: Sizes) -> list[str]:
    """The figures of docs/benchmarks.md's campaign table, for ``sizes`` (the doc's: REAL)."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    section = text[text.index("\n## The GPU campaign\n") :]
    table = section[section.index(HEADER) :].split("\n\n")[0].splitlines()
    figures = [line.split(" | ")[0].removeprefix("| ") for line in table[2:]]
    if sizes is REAL:
        return figures
    what = f"{REAL.epochs} epochs, {REAL.synthetic_train:,} images"
    dry = f"{sizes.epochs} epochs, {sizes.synthetic_train:,} images"
    figures = [f.replace("GPU:", "dry run, CPU:", 1).replace(what, dry) for f in figures]
    return [
        f.replace(f"{REAL.search_trials} trials", f"{sizes.search_trials} trials") for f in figures
    ]


def test_the_campaign_table_has_the_docs_columns_and_rows() -> None:
    # What the campaign prints can be set beside docs/benchmarks.md's table line for line.
    table = results_table({}, REAL, dry_run=False)
    assert table[0] == HEADER
    assert [line.split(" | ")[0].removeprefix("| ") for line in table[2:]] == _doc_figures(REAL)


def test_a_step_that_did_not_finish_shows_why_in_its_cells() -> None:
    steps = {"job": {"status": "timeout", "error": "killed at its 40 s limit"}}
    table = results_table(steps, REAL, dry_run=False)
    assert "| timeout: killed at its 40 s limit |" in table[2]
    assert "| not run |" in table[4]  # job_compile


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "figure"),
    [
        ("job", "train_seconds"),
        ("job_compile", "train_seconds"),
        ("tutorial", "images_per_sec"),
        ("search_1", "trials_per_minute"),
        ("search_2", "trials_per_minute"),
    ],
)
def test_dry_run_step_measures_its_figure(dry_run: dict[str, Any], step: str, figure: str) -> None:
    assert dry_run["record"]["steps"][step]["result"][figure] > 0


@pytest.mark.slow
@pytest.mark.parametrize("step", ["search_1", "search_2"])
def test_dry_run_search_finishes_its_trials(dry_run: dict[str, Any], step: str) -> None:
    result = dry_run["record"]["steps"][step]["result"]
    assert result["finished"] == result["trials_asked"]
    assert result["baseline_val_acc"] is not None
    assert (dry_run["out"] / step.replace("_", "-") / "trials.csv").is_file()


def test_failed_steps_are_recorded_and_the_rest_still_run(tmp_path: Path) -> None:
    # Not a dry run, on a machine without CUDA and without the subset: both steps fail.
    missing = tmp_path / "no-subset.tgz"
    proc = _campaign(
        "--out", str(tmp_path), "--only", "gpu_tests,search_data", "--subset", str(missing)
    )
    steps = json.loads((tmp_path / "campaign.json").read_text())["steps"]
    assert proc.returncode == 1
    assert steps["search_data"]["status"] == "failed"
    assert str(missing) in steps["search_data"]["error"]
    assert steps["gpu_tests"]["status"] == ("ok" if _cuda() else "failed")


def test_a_step_past_its_limit_is_stopped_and_recorded(tmp_path: Path) -> None:
    proc = _campaign(
        "--dry-run", "--out", str(tmp_path), "--only", "gpu_tests", "--limit", "gpu_tests=0.5"
    )
    steps = json.loads((tmp_path / "campaign.json").read_text())["steps"]
    assert proc.returncode == 1
    assert steps["gpu_tests"]["status"] == "timeout"


@pytest.mark.parametrize(
    ("budget", "low", "high"),
    [(None, 470, 480), (["--budget", "300"], 290, 300), (["--budget", "10"], 20, 20)],
    ids=["default 480 s", "300 s", "below the step's own limit"],
)
def test_the_budget_sets_what_the_last_step_may_take(
    tmp_path: Path, budget: list[str] | None, low: float, high: float
) -> None:
    # Not a dry run (the dry run keeps its own small limits): the last step, here the only
    # one, gets what the budget leaves after the wheels, and at least its own 20 s.
    missing = tmp_path / "no-subset.tgz"
    args = ["--out", str(tmp_path), "--only", "search_data", "--subset", str(missing)]
    proc = _campaign(*args, *(budget or []))
    record = json.loads((tmp_path / "campaign.json").read_text())
    limit = record["steps"]["search_data"]["limit_s"]
    assert proc.returncode == 1  # no subset: the step fails, after its limit was planned
    assert record["budget_s"] == (int(budget[1]) if budget else 480)
    assert low <= limit <= high
    assert f"campaign: search_data (limit {limit:.0f} s)" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--only", "nope"],
        ["--limit", "job=abc"],
        ["--limit", "nope=3"],
        [],  # no --out
        ["--budget", "0"],
        ["--budget", "abc"],
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    out = ["--out", str(tmp_path)] if args else []
    proc = _campaign(*out, *args)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def _cuda() -> bool:
    probe = [sys.executable, "-c", "import torch, sys; sys.exit(not torch.cuda.is_available())"]
    return subprocess.run(probe, check=False).returncode == 0
