"""Rows (d) and (e): the job's fixed cost per run and the search's launch-to-first-event time.

(d) On a warm cache (the decoded data set already in DATA_DIR, the interpreter's files in the
page cache after an untimed run of the same configuration), ``python -m job`` is timed as a
subprocess; its fixed cost is the wall time less the training and evaluation seconds it
records in ``history.json`` (every epoch's ``train_seconds`` + ``eval_seconds``, and the
evaluation before training). What remains: interpreter and torch start-up, reading the cache,
building the model, checkpoints, plots and the other output files.

(e) A small local search (``python -m search run --launcher local --cold-start``, no pruning)
on the same warm cache; each trial's ``launch_seconds`` (from launching the job to its first
event, recorded by the driver) is read from ``trials.csv``. Beside it, the same interval for
``python -m job`` started directly, so the driver's own share shows. Every trial starts as a
new process, as before warm starts, so the row stays comparable; row (f)
(:mod:`bench.startup`) sets warm starts against it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.paths import REPO
from bench.runs import data_vars, read_trials, run_logged, search_command
from bench.wall import WallConfig, clean_env, run_job


def fixed_cost(
    archive: Path, cfg: WallConfig, workdir: Path, device: str = "cpu"
) -> dict[str, Any]:
    """Time one warm ``python -m job`` run; return wall, train, eval and fixed seconds."""
    data_dir = workdir / "data"
    env = {"DEVICE": device}
    # Untimed: decodes the archive into data_dir and warms the page cache.
    run_job(archive, cfg, workdir / "warm-up", env, data_dir=data_dir)
    result = run_job(archive, cfg, workdir / "timed", env, data_dir=data_dir)
    history = result.details["history"]
    train = sum(h.get("train_seconds", 0.0) for h in history)
    evaluation = sum(h.get("eval_seconds", 0.0) for h in history)
    return {
        "wall_seconds": result.seconds,
        "train_seconds": train,
        "eval_seconds": evaluation,
        "fixed_seconds": result.seconds - train - evaluation,
        "val_acc": result.val_acc,
    }


def search_launch(
    archive: Path, cfg: WallConfig, workdir: Path, trials: int, device: str = "cpu"
) -> dict[str, Any]:
    """Run a small local search; return its trials' launch-to-first-event seconds and more."""
    data_dir = workdir / "data"
    run_job(archive, cfg, workdir / "warm-up", {"DEVICE": device}, data_dir=data_dir)
    direct = job_first_event_seconds(archive, cfg, workdir / "direct", data_dir, device)
    output = workdir / "search"
    job_env = {**data_vars(archive, data_dir), "DEVICE": device, **cfg.job_vars()}
    options = ["--launcher", "local", "--pruner", "none", "--seed", "0", "--output", str(output)]
    options += ["--cold-start"]  # the row predates warm starts; (f) measures them
    options += ["--gpus", "none"] if device == "cpu" else []
    cmd = search_command(trials, job_env, *options)
    what = "python -m search run"
    wall, _ = run_logged(cmd, clean_env(), workdir / "search", what=what, tail=10)
    launch = [
        float(row["launch_seconds"])
        for row in read_trials(output / "trials.csv")
        if row.get("launch_seconds")
    ]
    if not launch:
        raise RuntimeError(f"no trial in {output / 'trials.csv'} recorded launch_seconds")
    return {
        "trials": len(launch),
        "launch_seconds": launch,
        "median": statistics.median(launch),
        "mean": statistics.fmean(launch),
        "max": max(launch),
        "job_alone_first_event_seconds": direct,
        "search_wall_seconds": wall,
    }


def job_first_event_seconds(
    archive: Path, cfg: WallConfig, workdir: Path, data_dir: Path, device: str = "cpu"
) -> float:
    """Seconds from starting ``python -m job`` to its first stdout event; the run then ends."""
    env = clean_env()
    env.update(
        {
            **data_vars(archive, data_dir),
            "OUTPUT_DIR": str(workdir / "output"),
            "DEVICE": device,
            **cfg.job_vars(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "job"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    seconds = time.perf_counter() - t0
    proc.stdout.read()  # let it finish: a run killed mid-way would leave a checkpoint behind
    code = proc.wait()
    if code != 0 or not first.strip() or json.loads(first).get("v") is None:
        raise RuntimeError(f"python -m job exited {code}; first line {first[:200]!r}")
    return seconds
