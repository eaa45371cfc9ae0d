"""Rows (a)–(g), or the GPU synthetic rows: ``python -m bench`` (``make bench``) prints them.

The job side by side with the tutorial's pipeline; the table's speed-up is the job's advantage.

(a) input pipeline batches/s, (b) training images/s on CPU (job fp32 and bf16), (c) whole-job
wall time for small real-data configurations, from a cold start and as a warm repeat run, (d)
the job's fixed cost per run on a warm cache, (e) the search's launch-to-first-event time per
trial, (f) a short search's trials started cold against warm (launch → first event, trials
per minute), (g) the job's fixed cost beside ``import torch`` — or, with ``--gpu-synthetic``,
the full recipe on generated CIFAR-shaped data. Run it on a quiet machine: every figure is a
speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import wall
from bench.paths import ARCHIVE_HELP, given_or_default
from job.files import write_json

DEFAULT_WALL_CONFIGS = "1:2000:1000:1,0.25:5000:2000:2"
PARTS = ("a", "b", "c", "d", "e", "f", "g")
DEFAULT_WARM_CONFIG = "0.25:1000:500:2"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Benchmark the job against the tutorial's own pipeline on the same data, settings "
            "and machine: (a) input batches/s, (b) training images/s, (c) whole-job wall time, "
            "cold and warm; (d) the job's fixed cost per run, (e) the search's "
            "launch-to-first-event time, (f) trials started cold against warm, (g) the job's "
            "fixed cost beside import torch."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--archive", type=Path, help=ARCHIVE_HELP)
    p.add_argument("--only", default=",".join(PARTS), help="parts to run, comma-separated")
    p.add_argument("--json", type=Path, help="also save the results here as JSON")
    p.add_argument("--workdir", type=Path, help="scratch folder to use instead of a temporary one")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder's contents")
    p.add_argument("--batch-size", type=int, default=400, help="every part")
    p.add_argument("--device", default="cpu", help="device for parts (a) and (b)")
    g = p.add_argument_group("(a) input pipeline")
    g.add_argument("--pipeline-batches", type=int, default=50, help="timed batches")
    g.add_argument("--pipeline-warmup", type=int, default=6, help="untimed batches first")
    g = p.add_argument_group("(b) training throughput")
    g.add_argument("--train-width", type=float, default=1.0, help="MODEL_WIDTH")
    g.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    g.add_argument("--train-warmup", type=int, default=3, help="tutorial's untimed steps")
    g.add_argument("--precisions", default="fp32,bf16", help="job PRECISION values to time")
    g.add_argument("--train-test-images", type=int, default=400, help="job's TEST_LIMIT")
    g = p.add_argument_group("(c) whole-job wall time, cold and warm")
    g.add_argument(
        "--wall-configs",
        default=DEFAULT_WALL_CONFIGS,
        help="WIDTH:TRAIN:TEST:EPOCHS, comma-separated",
    )
    g = p.add_argument_group("(d) fixed cost per run, warm cache")
    g.add_argument("--fixed-config", default="0.25:5000:2000:2", help="WIDTH:TRAIN:TEST:EPOCHS")
    g = p.add_argument_group("(e) search: launch to first event")
    g.add_argument("--search-trials", type=int, default=3, help="trials of the local search")
    g.add_argument("--search-config", default="0.25:1000:500:1", help="WIDTH:TRAIN:TEST:EPOCHS")
    g = p.add_argument_group("(f) search: trials started cold against warm")
    g.add_argument("--warm-trials", type=int, default=20, help="trials of each search")
    g.add_argument("--warm-config", default=DEFAULT_WARM_CONFIG, help="WIDTH:TRAIN:TEST:EPOCHS")
    g.add_argument(
        "--warm-parallel", type=int, default=0, help="the searches' --parallel (0: its default)"
    )
    g = p.add_argument_group("--gpu-synthetic: full recipe on generated data (for a GPU)")
    g.add_argument("--gpu-synthetic", action="store_true", help="run this mode instead of a-c")
    g.add_argument("--synthetic-train", type=int, default=50_000, help="generated images")
    g.add_argument("--synthetic-test", type=int, default=10_000, help="generated images")
    g.add_argument("--gpu-epochs", type=int, default=8, help="job's EPOCHS")
    g.add_argument("--gpu-width", type=float, default=1.0, help="MODEL_WIDTH")
    g.add_argument("--gpu-steps", type=int, default=60, help="tutorial's timed steps")
    g.add_argument("--gpu-warmup", type=int, default=5, help="tutorial's untimed steps")
    g.add_argument(
        "--gpu-job-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra job variable for this mode, e.g. COMPILE=1 (repeatable)",
    )
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    parts = {s.strip() for s in args.only.split(",") if s.strip()}
    if not parts <= set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}, not {args.only!r}")
    if not args.gpu_synthetic:
        args.archive = given_or_default(args.archive)
    if not args.gpu_synthetic and not args.archive.is_file():
        parser.error(f"no archive at {args.archive}; pass --archive PATH (fast.ai cifar10.tgz)")
    try:
        wall.parse_configs(args.wall_configs)
        for one in (args.fixed_config, args.search_config, args.warm_config):
            if len(wall.parse_configs(one)) != 1:
                parser.error(
                    "--fixed-config, --search-config and --warm-config take one config, "
                    f"not {one!r}"
                )
    except ValueError as exc:
        parser.error(str(exc))
    if args.search_trials < 1 or args.warm_trials < 1:
        parser.error("--search-trials and --warm-trials take a positive number")
    if args.warm_parallel < 0:
        parser.error("--warm-parallel takes 0 (the search's default) or more")
    if any("=" not in item for item in args.gpu_job_env):
        parser.error("--gpu-job-env takes NAME=VALUE")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the table on stdout, progress on stderr."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    # Imported only now, so that --help and usage errors answer without loading torch.
    from bench.suite import log, machine_info
    from bench.table import render

    # The tutorial's num_workers=3 exceeds a 2-core machine's suggestion; that is the point.
    warnings.filterwarnings("ignore", message=".*worker processes in total.*")
    machine = machine_info()
    load, cpus = machine["load_average_1min"], machine["cpus"] or 1
    log(f"machine: {machine['cpu']}, {cpus} CPUs, torch {machine['torch']}, load {load:.2f}")
    if load > 0.5 * cpus:
        log(f"warning: the machine is busy (load {load:.2f}); the figures will be unreliable")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        rows, results = _run_all(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="resnet-bench-") as tmp:
            rows, results = _run_all(args, Path(tmp))
    bf16 = " (native bf16)" if machine["native_bf16"] else ""
    print(f"machine: {machine['cpu']}, {cpus} CPUs{bf16}, GPU: {machine['gpu'] or 'none'}")
    print(f"torch {machine['torch']}, {machine['torch_threads']} threads, load {load:.2f}")
    print()
    print(render(rows))
    print("\nspeed-up: the job's advantage (job/tutorial for rates, tutorial/job for times).")
    if args.json:
        write_json(args.json, results)
        log(f"results saved to {args.json}")
    return 0


def _run_all(args: argparse.Namespace, work: Path) -> tuple[list[Any], dict[str, Any]]:
    """Parts (a)–(e) (:mod:`bench.suite`), then (f) and (g) (:mod:`bench.startup`)."""
    import shutil

    from bench import startup
    from bench.suite import log, run

    rows, results = run(args, work)
    parts = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.gpu_synthetic:
        return rows, results
    details = results["details"]
    if "f" in parts:
        (cfg,) = wall.parse_configs(args.warm_config)
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
        res = startup.search_pair(
            args.archive, cfg, work / "f-warm", args.warm_trials, args.warm_parallel or None, log
        )
        details["warm_starts"] = res
        rows += startup.rows_f(res, cfg)
        log(f"(f) trials per minute, warm/cold: {res['trials_per_minute_ratio']:.2f}×")
    if "g" in parts:
        (cfg,) = wall.parse_configs(args.fixed_config)
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
        log(f"(g) job, {cfg.label}: fixed cost, then a fresh import torch, 3 times")
        res = startup.fixed_beside_torch(args.archive, cfg, work / "g-fixed")
        details["fixed_beside_torch"] = res
        rows += startup.rows_g(res, cfg)
        log(
            f"(g) fixed {res['fixed_seconds']:.2f} s, import torch "
            f"{res['import_torch_median']:.2f} s"
        )
    if not args.keep:
        for folder in ("f-warm", "g-fixed"):
            shutil.rmtree(work / folder / "data", ignore_errors=True)
    results["rows"] = [r.to_json() for r in rows]
    return rows, results


if __name__ == "__main__":
    raise SystemExit(main())
