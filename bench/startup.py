"""Rows (d)–(g): the job's fixed cost per run, the search's launch → first event, trials
started warm against cold, the fixed cost beside ``import torch`` (docs/benchmarks.md, "What
each figure measures", says how)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import runs
from bench.runs import WallConfig, run_job
from bench.table import Row
from testkit import REPO
from testkit.jobrun import clean_env, start_job


def fixed_cost(
    archive: Path, cfg: WallConfig, workdir: Path, device: str = "cpu"
) -> dict[str, Any]:
    """(d): time one warm ``python -m job`` run; its wall, train, eval and fixed seconds."""
    data_dir = workdir / "data"
    env = {"DEVICE": device}
    # Untimed: decodes the archive into data_dir and warms the page cache.
    run_job(archive, cfg, workdir / "warm-up", env, data_dir=data_dir)
    result = run_job(archive, cfg, workdir / "timed", env, data_dir=data_dir)
    train = sum(h.get("train_seconds", 0.0) for h in result.details["history"])
    evaluation = sum(h.get("eval_seconds", 0.0) for h in result.details["history"])
    return {
        "wall_seconds": result.seconds,
        "train_seconds": train,
        "eval_seconds": evaluation,
        "fixed_seconds": result.seconds - train - evaluation,
        "val_acc": result.val_acc,
    }


def _local_search(
    archive: Path, cfg: WallConfig, workdir: Path, data_dir: Path, trials: int, *options: str
) -> tuple[float, list[dict[str, str]]]:
    """A local search of ``trials`` on the CPU, no pruning; its wall seconds and trials.csv."""
    output = workdir / "search"
    job_env = {**runs.data_vars(archive, data_dir), "DEVICE": "cpu", **cfg.job_vars()}
    options = ("--launcher", "local", "--pruner", "none", "--seed", "0", "--gpus", "none", *options)
    cmd = runs.search_command(trials, job_env, *options, "--output", str(output))
    wall, _ = runs.run_logged(cmd, clean_env(), workdir / "search", what="the search", tail=10)
    return wall, runs.read_trials(output / "trials.csv")


def search_launch(archive: Path, cfg: WallConfig, workdir: Path, trials: int) -> dict[str, Any]:
    """(e): a small local search's launch → first event, and the job's own start beside it."""
    data_dir = workdir / "data"
    run_job(archive, cfg, workdir / "warm-up", {"DEVICE": "cpu"}, data_dir=data_dir)
    direct = job_first_event_seconds(archive, cfg, workdir / "direct", data_dir)
    wall, rows = _local_search(archive, cfg, workdir, data_dir, trials, "--cold-start")
    launch = [float(row["launch_seconds"]) for row in rows if row.get("launch_seconds")]
    if not launch:
        raise RuntimeError(f"no trial of the search in {workdir} recorded launch_seconds")
    return {
        "trials": len(launch),
        "launch_seconds": launch,
        "median": statistics.median(launch),
        "mean": statistics.fmean(launch),
        "max": max(launch),
        "job_alone_first_event_seconds": direct,
        "search_wall_seconds": wall,
    }


def job_first_event_seconds(archive: Path, cfg: WallConfig, workdir: Path, data_dir: Path) -> float:
    """Seconds from starting ``python -m job`` to its first stdout event; the run then ends."""
    env = clean_env() | runs.data_vars(archive, data_dir) | cfg.job_vars()
    env |= {"OUTPUT_DIR": str(workdir / "output"), "DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = start_job(env, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    seconds = time.perf_counter() - t0
    proc.stdout.read()  # let it finish: a run killed mid-way would leave a checkpoint behind
    code = proc.wait()
    if code != 0 or not first.strip() or json.loads(first).get("v") is None:
        raise RuntimeError(f"python -m job exited {code}; first line {first[:200]!r}")
    return seconds


def search_pair(
    archive: Path,
    cfg: WallConfig,
    workdir: Path,
    trials: int,
    parallel: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """(f): the same local search cold and warm; per mode its launch times and trials/min."""
    data_dir = workdir / "data"
    run_job(archive, cfg, workdir / "warm-up", {"DEVICE": "cpu"}, data_dir=data_dir)
    results: dict[str, Any] = {}
    for mode in ("cold", "warm"):
        log(f"(f) a {trials}-trial local search, {mode} starts, {cfg.label}")
        options = ["--parallel", str(parallel)] if parallel else []
        options += ["--cold-start"] if mode == "cold" else []
        wall, rows = _local_search(archive, cfg, workdir / mode, data_dir, trials, *options)
        finished = [r for r in rows if r.get("state") == "COMPLETE"]
        launch = [float(r["launch_seconds"]) for r in rows if r.get("launch_seconds")]
        warm = _warm_starts(workdir / mode / "search")
        if len(finished) != trials or len(launch) != trials:
            raise RuntimeError(f"the {mode} search finished {len(finished)} of {trials} trials")
        if warm != [mode == "warm"] * trials:
            raise RuntimeError(f"the {mode} search's trials started warm: {warm}")
        results[mode] = {
            "trials": trials,
            "wall_seconds": wall,
            "trials_per_minute": 60 * trials / wall,
            "launch_seconds": launch,
            "launch_median": statistics.median(launch),
            "launch_max": max(launch),
            "trial_seconds_median": statistics.median(float(r["seconds"]) for r in finished),
        }
        log(f"(f) {mode}: launch → first event median {results[mode]['launch_median']:.2f} s")
    cold, warm_tpm = results["cold"]["trials_per_minute"], results["warm"]["trials_per_minute"]
    results["trials_per_minute_ratio"] = warm_tpm / cold
    return results


def _warm_starts(output: Path) -> list[bool]:
    """Each trial's ``warm_start`` attribute, from the study's SQLite file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{output / 'study.db'}"
    study = optuna.load_study(study_name=None, storage=storage)  # its only study
    return [bool(t.user_attrs.get("warm_start")) for t in study.trials]


def fixed_beside_torch(archive: Path, cfg: WallConfig, workdir: Path) -> dict[str, Any]:
    """(g): (d)'s fixed cost and ``import torch`` (fresh processes, median of 3 after an
    untimed one, so every timed one finds the files in the page cache) in the same run."""
    fixed = fixed_cost(archive, cfg, workdir)
    seconds = []
    for _ in range(4):
        cmd = [sys.executable, "-c", "import torch"]
        seconds.append(runs.timed(subprocess.run, cmd, cwd=REPO, env=clean_env(), check=True)[1])
    torch_median = statistics.median(seconds[1:])
    return {
        **fixed,
        "import_torch_seconds": seconds[1:],
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


def warm_slots(slots: int = 8) -> dict[str, Any]:
    """Seconds until ``slots`` warm processes, asked for at once (a search's first trials),
    have each forked a trial (an empty one): a local search's start-up of its slots."""
    from concurrent.futures import ThreadPoolExecutor

    from search.launchers.warm import WarmPool

    pool, env = WarmPool(slots, module="this"), clean_env()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(slots) as threads:
        started = list(threads.map(lambda _: pool.start(env, REPO, frozenset(), 2), range(slots)))
    seconds = time.perf_counter() - t0
    waits = [p.wait() if p else None for p in started]
    pool.close()
    return {"slots": slots, "seconds": seconds, "exits": waits}
