"""Parallel CPU trials (docs/benchmarks.md): trials per minute of one search at --parallel N.

Runs ``python -m search run --launcher local`` once per ``--parallel`` value on a small
real-data configuration (random sampler, fixed seeds, no pruning, so every search trains the
same trials) and reports each search's wall time and trials per minute. The data cache is
filled by one untimed job first, so no search pays for decoding the archive.

    python -m bench.search_parallel --label after               # --parallel 1 and 2
    python -m bench.search_parallel --parallel 2 --trials 2 --train-limit 200 --epochs 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.paths import ARCHIVE_HELP, OUTPUT, REPO, given_or_default
from bench.runs import data_vars, search_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.search_parallel", description=__doc__)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--test-limit", type=int, default=1000)
    parser.add_argument("--model-width", type=float, default=0.25)
    parser.add_argument("--archive", type=Path, help=ARCHIVE_HELP)
    parser.add_argument("--output", type=Path, default=OUTPUT / "bench-search-parallel")
    parser.add_argument("--label", default="", help="a word for the rows, e.g. before or after")
    return parser


def _job_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        **data_vars(args.archive, args.output / "data"),
        "EPOCHS": str(args.epochs),
        "TRAIN_LIMIT": str(args.train_limit),
        "TEST_LIMIT": str(args.test_limit),
        "MODEL_WIDTH": str(args.model_width),
        "SEED": "0",
    }


def _warm_cache(args: argparse.Namespace) -> None:
    """One tiny job run fills DATA_DIR's decoded-array cache for every search after it."""
    env = {**os.environ, **_job_env(args), "EPOCHS": "1", "TRAIN_LIMIT": "100"}
    env |= {"TEST_LIMIT": "100", "OUTPUT_DIR": str(args.output / "warm")}
    subprocess.run(
        [sys.executable, "-m", "job"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL
    )


def _search(args: argparse.Namespace, parallel: int) -> dict[str, object]:
    output = args.output / f"parallel-{parallel}"
    shutil.rmtree(output, ignore_errors=True)
    options = ["--parallel", str(parallel), "--launcher", "local", "--gpus", "none"]
    options += ["--pruner", "none", "--sampler", "random", "--seed", "0"]
    options += ["--output", str(output), "--study-name", "bench"]
    cmd = search_command(args.trials, _job_env(args), *options)
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    return {
        "label": args.label,
        "parallel": parallel,
        "trials": args.trials,
        "wall_seconds": round(wall, 1),
        "trials_per_minute": round(args.trials / (wall / 60), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the searches and print one JSON line per search."""
    args = _parser().parse_args(argv)
    args.archive = given_or_default(args.archive)
    args.output = args.output.resolve()
    _warm_cache(args)
    print(json.dumps({"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes")}))
    for parallel in args.parallel:
        print(json.dumps(_search(args, parallel)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
