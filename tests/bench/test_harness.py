"""`python -m bench` runs end to end on a tiny generated archive (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.__main__ import COMMANDS
from bench.runs import WallConfig, parse_configs
from bench.table import Row, render
from tests.bench.commands import run_module


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("bench", *args)


def test_speed_up_reads_as_the_jobs_advantage() -> None:
    assert Row("rate", "images/s", 10.0, 30.0).ratio == pytest.approx(3.0)
    assert Row("time", "s", 30.0, 10.0, higher_is_better=False).ratio == pytest.approx(3.0)
    assert Row("acc", "", 0.5, 0.6, higher_is_better=None).ratio is None
    assert "3.00×" in render([Row("rate", "images/s", 10.0, 30.0, how="how")])


def test_wall_configs_parse() -> None:
    assert parse_configs("1:2000:1000:1,0.25:5000:2000:2") == [
        WallConfig(1.0, 2000, 1000, 1),
        WallConfig(0.25, 5000, 2000, 2),
    ]
    with pytest.raises(ValueError, match="WIDTH:TRAIN:TEST:EPOCHS"):
        parse_configs("1:2000")


def test_missing_archive_is_a_usage_error(tmp_path: Path) -> None:
    proc = _bench("--archive", str(tmp_path / "nope.tgz"))
    assert proc.returncode == 2
    assert "no archive" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "a,z"], "--only takes"),
        (["--warm-config", "1:2:3:1,1:2:3:1"], "take one config"),
        (["--warm-trials", "0"], "--warm-trials"),
        (["--fixed-config", "1:2"], "WIDTH:TRAIN:TEST:EPOCHS"),
        (["--search-config", "1:2:3:1,1:2:3:1"], "take one config"),
        (["--search-trials", "0"], "--search-trials"),
        (["--precisions", "bf16+fast"], "PRECISION+compile"),
        (["--checkpoint-widths", "1,wide"], "--checkpoint-widths"),
    ],
)
def test_bad_options_are_usage_errors(
    archives: dict[str, Path], args: list[str], message: str
) -> None:
    proc = _bench("--archive", str(archives["fastai"]), *args)
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_each_further_command(command: str) -> None:
    proc = _bench("--help")
    assert proc.returncode == 0, proc.stderr
    assert f"python -m bench {command}" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_a_further_command_gets_the_arguments_after_its_name(command: str) -> None:
    proc = _bench(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m bench {command} ")
    assert "--wall-configs" not in proc.stdout  # not the table's own options


@pytest.mark.slow
def test_fixed_cost_and_search_launch_rows(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    tiny = ["--batch-size", "50", "--fixed-config", "0.125:100:50:1"]
    tiny += ["--search-config", "0.125:100:50:1", "--search-trials", "2"]
    proc = _bench("--archive", str(archives["fastai"]), "--only", "d,e", "--json", str(out), *tiny)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    rows = {r["figure"][:3]: r for r in results["rows"]}
    assert rows["(d)"]["job"] > 0
    assert rows["(e)"]["job"] > 0
    fixed = results["details"]["fixed_cost"]
    assert fixed["fixed_seconds"] == pytest.approx(
        fixed["wall_seconds"] - fixed["train_seconds"] - fixed["eval_seconds"]
    )
    assert results["details"]["search_launch"]["trials"] == 2


def test_checkpoint_write_rows(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--only", "h", "--checkpoint-widths", "0.125,0.25", "--json", str(out)]
    proc = _bench("--archive", str(archives["fastai"]), *args)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    small, large = results["details"]["checkpoint"]
    assert large["bytes"] > 2 * small["bytes"]  # twice the channels: the weights and Adam's moments
    assert [r["job"] for r in results["rows"]] == [small["median"], large["median"]]
    assert all(s > 0 for s in small["seconds"] + large["seconds"])
    assert not list(tmp_path.glob("**/*.pt"))  # the written checkpoints are removed


@pytest.mark.slow
def test_all_parts_run_on_a_tiny_archive(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    tiny = ["--batch-size", "32", "--pipeline-batches", "3", "--pipeline-warmup", "1"]
    tiny += ["--train-width", "0.125", "--train-steps", "2", "--train-warmup", "1"]
    tiny += ["--train-test-images", "50", "--precisions", "bf16"]
    tiny += ["--wall-configs", "0.125:100:50:1", "--only", "a,b,c"]
    proc = _bench("--archive", str(archives["fastai"]), "--json", str(out), *tiny)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    rows = results["rows"]
    figures = [r["figure"] for r in rows]
    starts = ["(a) inpu", "(b) trai", "(c) cold", "    fina", "(c) warm", "    fina"]
    assert [f[:8] for f in figures] == starts
    assert all(r["tutorial"] > 0 and r["job"] > 0 for r in rows)
    assert all(r["ratio"] > 0 for r in rows if r["unit"])
    assert set(results["details"]["wall"]["w0.125-100-50-e1"]) == {"cold", "warm"}
    assert "speed-up" in proc.stdout
    assert "job bf16" in proc.stdout


@pytest.mark.slow
def test_warm_start_and_import_torch_rows(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    tiny = ["--batch-size", "50", "--fixed-config", "0.125:100:50:1", "--warm-parallel", "1"]
    tiny += ["--warm-config", "0.125:100:50:1", "--warm-trials", "2"]
    proc = _bench("--archive", str(archives["fastai"]), "--only", "f,g", "--json", str(out), *tiny)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    figures = [r["figure"][:22] for r in results["rows"]]
    assert figures == [
        "(f) launch → first eve",
        "(f) launch → first eve",
        "(f) trials per minute,",
        "(f) trials per minute,",
        "(g) import torch, fres",
        "(g) job fixed cost, wi",
        "    fixed cost less im",
    ]
    warm = results["details"]["warm_starts"]
    assert [warm[mode]["trials"] for mode in ("cold", "warm")] == [2, 2]
    assert warm["trials_per_minute_ratio"] == pytest.approx(
        warm["warm"]["trials_per_minute"] / warm["cold"]["trials_per_minute"]
    )
    fixed = results["details"]["fixed_beside_torch"]
    assert len(fixed["import_torch_seconds"]) == 3
    assert fixed["fixed_over_import_torch"] == pytest.approx(
        fixed["fixed_seconds"] - fixed["import_torch_median"]
    )
