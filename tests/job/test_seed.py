"""SEED=random: drawn once per OUTPUT_DIR, recorded everywhere, kept by a resumed run; an
explicit SEED is used as given. Real `python -m job` runs on the small generated archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import JobResult, job_env, run_job


def _run(archives: dict[str, Path], tmp: Path, seed: str) -> JobResult:
    env = job_env(tmp, DATA_URL=archives["python"].as_uri(), EPOCHS=1, SEED=seed)
    result = run_job(env)
    assert result.code == 0, result.stderr
    return result


def _recorded(result: JobResult, output: Path) -> list[object]:
    """The seed as config.json, the start event and metrics.json record it."""
    config = json.loads((output / "config.json").read_text())
    metrics = json.loads((output / "metrics.json").read_text())
    return [config["seed"], result.of("start")[0]["config"]["seed"], metrics["seed"]]


def test_a_random_seed_is_drawn_once_and_recorded_as_a_number(archives, tmp_path) -> None:
    result = _run(archives, tmp_path, "random")
    config_seed, start_seed, metrics_seed = _recorded(result, tmp_path / "output")
    assert isinstance(config_seed, int) and 0 <= config_seed < 2**31
    assert config_seed == start_seed == metrics_seed
    assert f"seed: {config_seed}, drawn (SEED=random)" in result.stderr


def test_two_output_dirs_draw_two_seeds(archives, tmp_path) -> None:
    first = _run(archives, tmp_path / "a", "random")
    second = _run(archives, tmp_path / "b", "random")
    # Two draws of 31 bits agree once in 2**31 runs.
    assert _recorded(first, tmp_path / "a" / "output") != _recorded(
        second, tmp_path / "b" / "output"
    )


def test_a_resumed_random_run_keeps_the_seed_of_its_checkpoint(archives, tmp_path) -> None:
    first = _run(archives, tmp_path, "random")
    (seed, *_) = _recorded(first, tmp_path / "output")
    again = _run(archives, tmp_path, "random")  # the finished run resumes at its end
    assert _recorded(again, tmp_path / "output") == [seed] * 3
    assert json.loads((tmp_path / "output" / "metrics.json").read_text())["resumed_from"] == 1
    assert f"seed: {seed}, from " in again.stderr


def test_a_random_run_over_a_damaged_checkpoint_reports_the_damage(archives, tmp_path) -> None:
    _run(archives, tmp_path, "random")
    checkpoint = tmp_path / "output" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    env = job_env(tmp_path, DATA_URL=archives["python"].as_uri(), EPOCHS=1, SEED="random")
    result = run_job(env)
    assert result.code == 2
    assert "damaged checkpoint.pt" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("seed", ["0", "7"])
def test_an_explicit_seed_is_used_as_given(archives, tmp_path, seed) -> None:
    result = _run(archives, tmp_path, seed)
    assert _recorded(result, tmp_path / "output") == [int(seed)] * 3
    assert "SEED=random" not in result.stderr
