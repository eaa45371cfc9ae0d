"""Rows (f) and (g): trials that start warm against cold ones, and the job's fixed cost beside
``import torch``.

(f) The same short local search twice on a warm data cache, ``python -m search run
--launcher local --pruner none``: once with ``--cold-start`` (every trial a new ``python -m
job`` process) and once as it runs by default (trials forked from a warm process per slot,
:mod:`search.launchers.warm`). Each gives its trials' median launch → first event
(``launch_seconds``, the driver's clock) and its trials per minute (finished trials over the
search's wall time, the driver's own start included); the warm search's trials are checked
to have started warm (their ``warm_start`` attribute).

(g) ``python -m job``'s fixed cost, as row (d) measures it (process wall time less the
training and evaluation seconds of ``history.json``, on a warm data cache), beside a fresh
``python -c "import torch"`` timed in the same run: the interpreter's and PyTorch's own start
on this machine, the floor of a cold start.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.overhead import fixed_cost
from bench.paths import REPO
from bench.runs import data_vars, read_trials, run_logged, search_command
from bench.table import Row
from bench.wall import WallConfig, clean_env, run_job

MODES = ("cold", "warm")


def search_pair(
    archive: Path,
    cfg: WallConfig,
    workdir: Path,
    trials: int,
    parallel: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the same local search cold and warm; per mode its launch times, trials/min, …"""
    data_dir = workdir / "data"
    run_job(archive, cfg, workdir / "warm-up", {"DEVICE": "cpu"}, data_dir=data_dir)
    results: dict[str, Any] = {}
    for mode in MODES:
        log(f"(f) a {trials}-trial local search, {mode} starts, {cfg.label}")
        results[mode] = _search(archive, cfg, workdir / mode, data_dir, trials, mode, parallel)
        log(
            f"(f) {mode}: launch → first event median {results[mode]['launch_median']:.2f} s, "
            f"{results[mode]['trials_per_minute']:.2f} trials/min"
        )
    cold, warm = results["cold"]["trials_per_minute"], results["warm"]["trials_per_minute"]
    results["trials_per_minute_ratio"] = warm / cold
    return results


def _search(
    archive: Path,
    cfg: WallConfig,
    workdir: Path,
    data_dir: Path,
    trials: int,
    mode: str,
    parallel: int | None,
) -> dict[str, Any]:
    output = workdir / "search"
    job_env = {**data_vars(archive, data_dir), "DEVICE": "cpu", **cfg.job_vars()}
    options = ["--launcher", "local", "--pruner", "none", "--seed", "0", "--gpus", "none"]
    options += ["--output", str(output)]
    options += ["--parallel", str(parallel)] if parallel else []
    options += ["--cold-start"] if mode == "cold" else []
    cmd = search_command(trials, job_env, *options)
    wall, _ = run_logged(cmd, clean_env(), workdir / "search", what=f"the {mode} search", tail=10)
    rows = read_trials(output / "trials.csv")
    finished = [r for r in rows if r.get("state") == "COMPLETE"]
    launch = [float(r["launch_seconds"]) for r in rows if r.get("launch_seconds")]
    warm = _warm_starts(output)
    if len(finished) != trials or len(launch) != trials:
        raise RuntimeError(f"the {mode} search finished {len(finished)} of {trials} trials")
    if warm != [mode == "warm"] * trials:
        raise RuntimeError(f"the {mode} search's trials started warm: {warm}")
    return {
        "trials": trials,
        "wall_seconds": wall,
        "trials_per_minute": 60 * trials / wall,
        "launch_seconds": launch,
        "launch_median": statistics.median(launch),
        "launch_max": max(launch),
        "trial_seconds_median": statistics.median(float(r["seconds"]) for r in finished),
    }


def _warm_starts(output: Path) -> list[bool]:
    """Each trial's ``warm_start`` attribute, from the study's SQLite file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{output / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return [bool(t.user_attrs.get("warm_start")) for t in study.trials]


def import_torch_seconds(repeats: int = 3) -> list[float]:
    """Wall seconds of ``python -c "import torch"``, each a fresh process from the repository
    root (the first one untimed, so that every timed one finds the files in the page cache)."""
    seconds = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import torch"], cwd=REPO, env=clean_env(), check=True
        )
        if i:
            seconds.append(time.perf_counter() - t0)
    return seconds


def fixed_beside_torch(archive: Path, cfg: WallConfig, workdir: Path) -> dict[str, Any]:
    """Row (d)'s fixed cost and ``import torch`` in the same run, and their difference."""
    fixed = fixed_cost(archive, cfg, workdir)
    torch_seconds = import_torch_seconds()
    torch_median = statistics.median(torch_seconds)
    return {
        **fixed,
        "import_torch_seconds": torch_seconds,
        "import_torch_median": torch_median,
        "fixed_over_import_torch": fixed["fixed_seconds"] - torch_median,
    }


def rows_f(res: dict[str, Any], cfg: WallConfig) -> list[Row]:
    """Cold and warm rows; the warm ones' speed-up column is warm against cold."""
    cold, warm = res["cold"], res["warm"]
    how = (
        f"`python -m search run --launcher local --pruner none`, {cold['trials']} trials, "
        f"{cfg.label}, warm data cache; the tutorial column holds the cold search's figure"
    )
    launch_how = "median of the trials' launch_seconds (the driver's clock, launch → first event)"
    return [
        Row("(f) launch → first event, cold start", "s", None, cold["launch_median"], None,
            how=f"{launch_how}; max {cold['launch_max']:.2f} s"),
        Row("(f) launch → first event, warm start", "s", cold["launch_median"],
            warm["launch_median"], False,
            how=f"{launch_how}; max {warm['launch_max']:.2f} s (the first trial of a slot "
            f"starts its warm process); {how}"),
        Row("(f) trials per minute, cold start", "trials/min", None, cold["trials_per_minute"],
            None, how=f"search wall {cold['wall_seconds']:.1f} s"),
        Row("(f) trials per minute, warm start", "trials/min", cold["trials_per_minute"],
            warm["trials_per_minute"], True,
            how=f"search wall {warm['wall_seconds']:.1f} s; {how}"),
    ]  # fmt: skip


def rows_g(res: dict[str, Any], cfg: WallConfig) -> list[Row]:
    """The fixed cost beside ``import torch``; the difference is the job's own start."""
    return [
        Row("(g) import torch, fresh python", "s", None, res["import_torch_median"], None,
            how="`python -c \"import torch\"` from the repository root, median of 3 after an "
            "untimed one"),
        Row(f"(g) job fixed cost, {cfg.label}", "s", None, res["fixed_seconds"], None,
            how=f"as (d), same run: wall {res['wall_seconds']:.1f} s less train "
            f"{res['train_seconds']:.1f} s and eval {res['eval_seconds']:.1f} s"),
        Row("    fixed cost less import torch", "s", None, res["fixed_over_import_torch"], None,
            how="what the job itself adds to a cold start"),
    ]  # fmt: skip
