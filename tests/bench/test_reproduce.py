"""``python -m bench.reproduce``: the full recipe unless the environment overrides it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.reproduce import RECIPE, job_env
from tests.bench.commands import run_module


def _env(environ: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    return job_env(environ, "file:///a.tgz", Path("/out"))


def test_recipe_is_the_full_data_width_1_8_epochs_seed_0() -> None:
    env, overrides = _env({})
    assert {k: env[k] for k in RECIPE} == {
        "TRAIN_LIMIT": "0",
        "TEST_LIMIT": "0",
        "MODEL_WIDTH": "1",
        "EPOCHS": "8",
        "SEED": "0",
    }
    assert overrides == {}


@pytest.mark.parametrize(("environ", "precision"), [({}, None), ({"PRECISION": "fp32"}, "fp32")])
def test_precision_is_the_jobs_auto_unless_set(
    environ: dict[str, str], precision: str | None
) -> None:
    env, _ = _env(environ)
    assert env.get("PRECISION") == precision


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [
        ({"EPOCHS": "1"}, {"EPOCHS": "1"}),
        ({"MODEL_WIDTH": "1.0", "SEED": "0"}, {}),
        ({"MAX_LR": "0.02"}, {"MAX_LR": "0.02"}),
        ({"MAX_LR": "0.01", "DATA_DIR": "/d", "DEVICE": "cpu", "PRECISION": "fp32"}, {}),
    ],
)
def test_overrides_are_the_changes_to_what_is_trained(
    environ: dict[str, str], overrides: dict[str, str]
) -> None:
    env, found = _env(environ)
    assert found == overrides
    assert all(env[k] == v for k, v in environ.items())


@pytest.mark.slow
def test_tiny_override_runs_the_job_and_compares(archives: dict[str, Path], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATA_URL": archives["fastai"].as_uri(),
        "DATA_DIR": str(tmp_path / "data"),
        "TRAIN_LIMIT": "200",
        "TEST_LIMIT": "100",
        "EPOCHS": "1",
        "MODEL_WIDTH": "0.125",
        "DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    proc = run_module("bench.reproduce", "--output", str(tmp_path / "out"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "0.9050–0.9059" in proc.stdout
    assert "NOT the full recipe" in proc.stdout
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_job_failure_is_passed_through(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DEVICE": "cpu"}
    missing = (tmp_path / "missing.tgz").as_uri()
    args = ["--data-url", missing, "--output", str(tmp_path / "out")]
    proc = run_module("bench.reproduce", *args, env=env, timeout=300)
    assert proc.returncode == 3  # the job's "data unavailable"
    assert "exited 3" in proc.stderr
