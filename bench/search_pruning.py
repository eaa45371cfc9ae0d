"""The pruning study (docs/search.md): the same study with and without the median pruner.

Runs ``python -m search run`` twice on a small real-data configuration (same sampler seed,
same job seed), then reports per study the epochs spent, the best val_acc found, the
baseline's (trial 0, the tutorial's recipe) and the driver's overhead per trial (launch to
the job's first event). Expensive: 2 × TRIALS runs.

    python bench/search_pruning.py                       # 20 trials each, ../shared/data
    python bench/search_pruning.py --trials 2 --epochs 2 --train-limit 200 --archive x.tgz
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna

if __package__ in (None, ""):
    # Run as a script (``python bench/search_pruning.py``): the checkout holds ``bench``.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.paths import ARCHIVE_HELP, OUTPUT, REPO, given_or_default
from bench.runs import data_vars, search_command
from job.files import write_json


def _run(args: argparse.Namespace, pruner: str) -> dict:
    output = args.output / pruner
    storage = f"sqlite:///{(output / 'study.db').resolve()}"
    job = {
        **data_vars(args.archive, args.output / "data"),
        "EPOCHS": str(args.epochs),
        "TRAIN_LIMIT": str(args.train_limit),
        "TEST_LIMIT": str(args.test_limit),
        "MODEL_WIDTH": str(args.model_width),
        "SEED": "0",
    }
    if args.device:
        job["DEVICE"] = args.device
    options = ["--parallel", str(args.parallel), "--launcher", args.launcher]
    options += ["--pruner", pruner, "--seed", str(args.seed), "--output", str(output)]
    options += ["--study-name", "bench"]
    if args.gpus:
        options += ["--gpus", args.gpus]
    cmd = search_command(args.trials, job, *options)
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - t0
    study = optuna.load_study(study_name="bench", storage=storage)
    trials = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    baseline = study.trials[0]
    launch = [t.user_attrs["launch_seconds"] for t in trials if "launch_seconds" in t.user_attrs]
    return {
        "pruner": pruner,
        "trials": len(trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "epochs_spent": sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
        "epochs_budget": len(trials) * args.epochs,
        "best_val_acc": study.best_value,
        "best_params": study.best_params,
        "baseline_val_acc": baseline.value if baseline.state.name == "COMPLETE" else None,
        "wall_seconds": round(wall, 1),
        "launch_to_first_event_s": {
            "median": round(statistics.median(launch), 3) if launch else None,
            "mean": round(statistics.fmean(launch), 3) if launch else None,
            "max": round(max(launch), 3) if launch else None,
        },
    }


def main() -> None:
    """Run both studies and print a side-by-side summary (also written as JSON)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=5000)
    p.add_argument("--test-limit", type=int, default=1000)
    p.add_argument("--model-width", type=float, default=0.25)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--launcher", default="local", choices=["local", "docker"])
    p.add_argument("--gpus", default=None, help="passed to --gpus (e.g. none)")
    p.add_argument("--device", default=None, help="job DEVICE (default: the job's auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archive", type=Path, help=ARCHIVE_HELP)
    p.add_argument("--output", type=Path, default=OUTPUT / "bench-search")
    args = p.parse_args()
    args.archive = given_or_default(args.archive)
    if not args.archive.is_file():
        sys.exit(f"search_pruning: no archive at {args.archive}; pass --archive.")
    results = [_run(args, "none"), _run(args, "median")]
    write_json(args.output / "search_pruning.json", results)
    print(
        f"{'pruner':8} {'trials':>6} {'pruned':>6} {'epochs':>11} {'best val_acc':>12} "
        f"{'baseline':>8} {'launch→event (median s)':>24} {'wall s':>7}"
    )
    for r in results:
        baseline = r["baseline_val_acc"]
        print(
            f"{r['pruner']:8} {r['trials']:6d} {r['pruned']:6d} "
            f"{r['epochs_spent']:5d}/{r['epochs_budget']:<5d} {r['best_val_acc']:12.4f} "
            f"{'-' if baseline is None else f'{baseline:.4f}':>8} "
            f"{r['launch_to_first_event_s']['median']!s:>24} {r['wall_seconds']:7.1f}"
        )
    print(f"written: {args.output / 'search_pruning.json'}")


if __name__ == "__main__":
    main()
