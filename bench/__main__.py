"""Rows (a)–(h), or the GPU campaign's: ``python -m bench`` (``make bench``) prints them.

The job beside the tutorial's pipeline on the same data, settings and machine, one part a row
(docs/benchmarks.md says how each is measured); with ``--gpu``, the GPU campaign
(:mod:`bench.gpu`). Run it on a quiet machine: every figure is a speed. ``python -m bench
decisions ARGS…`` and ``python -m bench decode ARGS…`` run :mod:`bench.decisions` and
:mod:`bench.decode` instead, each with its own --help.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench import gpu, runs
from bench.paths import ARCHIVE_HELP, command_parser, given_or_default
from job.files import write_json

PARTS = ("a", "b", "c", "d", "e", "f", "g", "h")
COMMANDS = ("decisions", "decode")
"""First arguments that run :mod:`bench.decisions` or :mod:`bench.decode` with the rest."""


def _parser() -> argparse.ArgumentParser:
    p = command_parser("python -m bench", __doc__)
    p.add_argument("--archive", type=Path, help=ARCHIVE_HELP)
    p.add_argument("--only", help="parts (a-h), or with --gpu steps, to run, comma-separated")
    p.add_argument("--json", type=Path, help="also save the results here as JSON")
    p.add_argument("--workdir", type=Path, help="scratch folder to use instead of a temporary one")
    p.add_argument("--batch-size", type=int, default=400, help="every part")
    p.add_argument("--device", default="cpu", help="device for parts (a) and (b)")
    g = p.add_argument_group("(a) input pipeline")
    g.add_argument("--pipeline-batches", type=int, default=50, help="timed batches")
    g.add_argument("--pipeline-warmup", type=int, default=6, help="untimed batches first")
    g = p.add_argument_group("(b) training throughput")
    g.add_argument("--train-width", type=float, default=1.0, help="MODEL_WIDTH")
    g.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    g.add_argument("--train-warmup", type=int, default=3, help="tutorial's untimed steps")
    g.add_argument("--precisions", default="fp32,bf16", help="job PRECISIONs, +compile: COMPILE=1")
    g.add_argument("--train-test-images", type=int, default=400, help="job's TEST_LIMIT")
    g = p.add_argument_group("(c) whole-job wall time, cold and warm")
    g.add_argument(
        "--wall-configs",
        default="1:2000:1000:1,0.25:5000:2000:2",
        help="WIDTH:TRAIN:TEST:EPOCHS, comma-separated",
    )
    g = p.add_argument_group("(d) fixed cost per run, warm cache")
    g.add_argument("--fixed-config", default="0.25:5000:2000:2", help="WIDTH:TRAIN:TEST:EPOCHS")
    g = p.add_argument_group("(e) search: launch to first event")
    g.add_argument("--search-trials", type=int, default=3, help="trials of the local search")
    g.add_argument("--search-config", default="0.25:1000:500:1", help="WIDTH:TRAIN:TEST:EPOCHS")
    g = p.add_argument_group("(f) search: trials started cold against warm")
    g.add_argument("--warm-trials", type=int, default=20, help="trials of each search")
    g.add_argument("--warm-config", default="0.25:1000:500:2", help="WIDTH:TRAIN:TEST:EPOCHS")
    g.add_argument(
        "--warm-parallel", type=int, default=0, help="the searches' --parallel (0: its default)"
    )
    g = p.add_argument_group("(h) checkpoint writes")
    widths = lambda text: [float(w) for w in text.split(",")]  # noqa: E731
    g.add_argument("--checkpoint-widths", type=widths, default=[0.25, 1.0], help="MODEL_WIDTHs")
    gpu.add_options(p)
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.gpu:
        gpu.check(args, parser)
        return
    args.only = args.only or ",".join(PARTS)
    if not {s.strip() for s in args.only.split(",") if s.strip()} <= set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}, not {args.only!r}")
    args.archive = given_or_default(args.archive)
    if not args.archive.is_file():
        parser.error(f"no archive at {args.archive}; pass --archive PATH (fast.ai cifar10.tgz)")
    try:
        runs.parse_configs(args.wall_configs)
        for one in (args.fixed_config, args.search_config, args.warm_config):
            if len(runs.parse_configs(one)) != 1:
                parser.error(f"--fixed-, --search- and --warm-config take one config, not {one!r}")
    except ValueError as exc:
        parser.error(str(exc))
    if any(s.partition("+")[2] not in ("", "compile") for s in args.precisions.split(",")):
        parser.error("--precisions takes PRECISION or PRECISION+compile, comma-separated")
    if args.search_trials < 1 or args.warm_trials < 1:
        parser.error("--search-trials and --warm-trials take a positive number")
    if args.warm_parallel < 0:
        parser.error("--warm-parallel takes 0 (the search's default) or more")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the table on stdout, progress on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        # Imported only when asked for: neither --help nor the table needs them.
        return int(importlib.import_module(f"bench.{argv[0]}").main(argv[1:]))
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    if args.gpu:
        return gpu.main(args)
    # Imported only now, so that --help and usage errors answer without loading torch.
    from bench.suite import log, machine_info, run
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
        rows, results = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="resnet-bench-") as tmp:
            rows, results = run(args, Path(tmp))
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


if __name__ == "__main__":
    raise SystemExit(main())
