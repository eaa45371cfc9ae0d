"""Rows (a)–(h): runs the parts ``python -m bench`` was asked for, each on the same data,
settings and machine for both pipelines, and returns their table rows and details."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import runs, startup, throughput, tutorial
from bench.table import Row

_T0 = time.perf_counter()


def log(message: str) -> None:
    """One line of progress on stderr, stamped with seconds since the start."""
    print(f"[bench {time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """CPU, GPU, versions and current load, for the table header and the JSON."""
    from job.cpuinfo import model_name, native_bf16

    return {
        "cpu": model_name(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0],
    }


def _part_a(args: argparse.Namespace, work: Path) -> tuple[list[Row], None]:
    device = torch.device(args.device)
    png_root, _ = tutorial.extracted(args.archive, work / "tutorial-png")
    log("(a) job data: decoding the archive into the job's cache (untimed)")
    data = runs.decode(args.archive, work / "job-data")
    n, w, b = args.pipeline_batches, args.pipeline_warmup, args.batch_size
    log(f"(a) tutorial DataLoader: {n} batches after {w} warm-up")
    tut = throughput.tutorial_batches_per_sec(png_root, b, n, w, device)
    log(f"(a) job DeviceLoader: {n} batches after {w} warm-up")
    job = throughput.job_batches_per_sec(data, b, n, w, device)
    how = (
        f"augmented, normalised training batches of {b} pulled (at least {n} and "
        f"{throughput.MIN_SECONDS:g} s) after {w} warm-up, no model; "
        "tutorial: ImageFolder + PIL transforms in DataLoader(num_workers=3); "
        f"job: DeviceLoader on {device} over the decoded uint8 set"
    )
    return [Row(f"(a) input pipeline, batch {b}", "batches/s", tut, job, how=how)], None


def _part_b(args: argparse.Namespace, work: Path) -> tuple[list[Row], None]:
    from job.config import from_env, resolve_precision

    device = torch.device(args.device)
    # What the job's PRECISION=auto resolves to on this device (this machine's CPU flags).
    auto = resolve_precision(from_env({"DEVICE": str(device)}), device)
    png_root, _ = tutorial.extracted(args.archive, work / "tutorial-png")
    width, steps, b, warmup = args.train_width, args.train_steps, args.batch_size, args.train_warmup
    log(f"(b) tutorial: {steps} training steps (width {width:g}) after {warmup}")
    tut = throughput.tutorial_images_per_sec(png_root, width, b, steps, warmup, device)
    # Two epochs of `steps` batches on the prepared DATA_DIR: epoch 1 is the warm-up, and epoch
    # 2's images_per_sec (training images over training seconds, no evaluation) is the figure.
    cfg = runs.WallConfig(width, steps * b, args.train_test_images, 2, b)
    rows = []
    for spec in filter(None, (s.strip() for s in args.precisions.split(","))):
        precision, _, compiled = spec.partition("+")  # bf16+compile: the same with COMPILE=1
        log(f"(b) job PRECISION={spec}: 2 epochs of {steps} steps, epoch 2 timed")
        env = {"PRECISION": precision, "DEVICE": str(device), "COMPILE": str(int(bool(compiled)))}
        res = runs.run_job(args.archive, cfg, work / f"b-job-{spec}", env, work / "job-data")
        history = res.details["history"]  # [0]: the evaluation before training
        job = float(history[-1]["images_per_sec"])
        here = " (auto here)" if precision == auto else ""
        figure = f"(b) training, width {width:g}, job {spec}{here}"
        how = (
            f"batch {b} on {device}; tutorial (fp32): {steps} steps of its loop fed by its "
            f"DataLoader after {warmup} warm-up, in-process; job: `python -m job` with "
            f"TRAIN_LIMIT={steps * b}, EPOCHS=2, PRECISION={spec}, epoch 2's "
            "images_per_sec from history.json"
        )
        rows.append(Row(figure, "images/s", tut, job, how=how))
        if compiled:
            extra = history[1]["train_seconds"] - history[2]["train_seconds"]
            rows.append(Row("    its compile time: epoch 1 less epoch 2", "s", None, extra, None))
    return rows, None


def _part_c(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    details: dict[str, Any] = {}
    runs.warm_file(args.archive)
    for cfg in runs.parse_configs(args.wall_configs, args.batch_size):
        base = work / f"c-{cfg.slug}"
        # Each warm run follows its own cold run, which prepared its data folder.
        results: dict[str, dict[str, runs.RunResult]] = {"tutorial": {}, "job": {}}
        for side, run in (("tutorial", runs.run_tutorial), ("job", runs.run_job)):
            for start in ("cold", "warm"):
                log(f"(c) {side}, {cfg.label}: {start} start")
                took = run(args.archive, cfg, base / side, warm=start == "warm")
                log(f"(c) {side} took {took.seconds:.1f} s, val_acc {took.val_acc:.4f}")
                results[side][start] = took
            _cleanup(base / side / "data")
        tut, job = results["tutorial"], results["job"]
        first = not rows
        for start in ("cold", "warm"):
            how = _C_HOW[start] if first else ""
            acc_how = _C_HOW["val_acc"] if first and start == "cold" else ""
            rows += [
                Row(f"(c) {start} whole job, {cfg.label}", "s", tut[start].seconds,
                    job[start].seconds, False, how),
                Row("    final val_acc (same recipe)", "", tut[start].val_acc,
                    job[start].val_acc, None, acc_how),
            ]  # fmt: skip
        details[cfg.slug] = {
            start: {
                side: {"seconds": r[start].seconds, **r[start].details}
                for side, r in results.items()
            }
            for start in ("cold", "warm")
        }
    return rows, details


_C_HOW = {
    "cold": (
        "subprocess wall time from a cold start, archive to result; job: DATA_URL=file://… "
        "python -m job with a fresh DATA_DIR (hash, decode) and OUTPUT_DIR; tutorial: "
        "python -m bench.tutorial into a fresh folder (extract, ImageFolder, train, evaluate)"
    ),
    "warm": (
        "the repeat run right after the cold one, as in a search; job: same DATA_DIR (decoded "
        "cache present), fresh OUTPUT_DIR; tutorial: --reuse-extracted on the PNGs its cold "
        "run extracted (no extraction; ImageFolder, PNG reads, train, evaluate)"
    ),
    "val_acc": (
        "tutorial: mean of per-batch accuracies (its validation_epoch_end); job: accuracy over "
        "the whole test subset; different seeded subsets"
    ),
}


def _part_d(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any]]:
    (cfg,) = runs.parse_configs(args.fixed_config, args.batch_size)
    log(f"(d) job, {cfg.label}: an untimed run to warm the cache, then a timed one")
    res = startup.fixed_cost(args.archive, cfg, work / f"d-{cfg.slug}", str(args.device))
    _cleanup(work / f"d-{cfg.slug}" / "data")
    log(f"(d) wall {res['wall_seconds']:.1f} s, fixed {res['fixed_seconds']:.1f} s")
    how = (
        "`python -m job` subprocess on a warm cache (decoded data set in DATA_DIR, after an "
        "untimed identical run): wall time less history.json's train_seconds and "
        "eval_seconds (every epoch and the evaluation before training) — start-up, reading "
        f"the cache, model, checkpoints, plots and outputs; wall {res['wall_seconds']:.1f} s"
    )
    row = Row(f"(d) fixed cost per run, {cfg.label}", "s", None, res["fixed_seconds"], None, how)
    return [row], res


def _part_e(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any]]:
    (cfg,) = runs.parse_configs(args.search_config, args.batch_size)
    n = args.search_trials
    log(f"(e) a local search of {n} trials, {cfg.label}, no pruning")
    res = startup.search_launch(args.archive, cfg, work / "e-search", n)
    _cleanup(work / "e-search" / "data")
    log(f"(e) launch to first event: median {res['median']:.2f} s over {res['trials']} trials")
    how = (
        "each trial's launch_seconds from trials.csv (the driver's clock from launching "
        "`python -m job` as a new process to its first event), `python -m search run "
        f"--launcher local --pruner none --cold-start`, {cfg.label}, warm cache; "
        f"max {res['max']:.2f} s"
    )
    figure = f"(e) search: launch → first event, median of {res['trials']} trials"
    alone = "`python -m job` started directly, same settings: its share of the figure above"
    direct = res["job_alone_first_event_seconds"]
    rows = [
        Row(figure, "s", None, res["median"], None, how),
        Row("    the job alone: start → first event", "s", None, direct, None, alone),
    ]
    return rows, res


def _cleanup(path: Path) -> None:
    # Each cold and warm pair leaves an extracted or decoded copy of the data set; free the disk.
    shutil.rmtree(path, ignore_errors=True)


def _part_f(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any]]:
    (cfg,) = runs.parse_configs(args.warm_config, args.batch_size)
    trials, parallel = args.warm_trials, args.warm_parallel or None
    res = startup.search_pair(args.archive, cfg, work / "f-warm", trials, parallel, log)
    _cleanup(work / "f-warm" / "data")
    log(f"(f) trials per minute, warm/cold: {res['trials_per_minute_ratio']:.2f}×")
    return startup.rows_f(res, cfg), res


def _part_g(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any]]:
    (cfg,) = runs.parse_configs(args.fixed_config, args.batch_size)
    log(f"(g) job, {cfg.label}: fixed cost, then a fresh import torch, 3 times")
    res = startup.fixed_beside_torch(args.archive, cfg, work / "g-fixed")
    _cleanup(work / "g-fixed" / "data")
    log(f"(g) fixed {res['fixed_seconds']:.2f} s, import torch {res['import_torch_median']:.2f} s")
    return startup.rows_g(res, cfg), res


def _part_h(args: argparse.Namespace, work: Path) -> tuple[list[Row], list[dict[str, Any]]]:
    log(f"(h) checkpoint writes at widths {args.checkpoint_widths}")
    res = [throughput.checkpoint_seconds(w, work) for w in args.checkpoint_widths]
    how = (
        "job.checkpoint.save_state (torch.save, sha256, fsync, rename) of the state the job "
        "writes after every epoch; median of 5 writes after an untimed one"
    )
    rows: list[Row] = []
    for r in res:
        figure = f"(h) checkpoint write, width {r['width']:g} ({r['bytes'] / 1e6:.1f} MB)"
        rows.append(Row(figure, "s", None, r["median"], None, "" if rows else how))
    return rows, res


_PARTS: dict[str, tuple[Callable[[argparse.Namespace, Path], tuple[list[Row], Any]], str]] = {
    "a": (_part_a, ""),
    "b": (_part_b, ""),
    "c": (_part_c, "wall"),
    "d": (_part_d, "fixed_cost"),
    "e": (_part_e, "search_launch"),
    "f": (_part_f, "warm_starts"),
    "g": (_part_g, "fixed_beside_torch"),
    "h": (_part_h, "checkpoint"),
}
"""Each part, in order, and the key of its details in the JSON results."""


def run(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any]]:
    """Run the selected parts in ``work``; return the rows and everything for ``--json``."""
    machine = machine_info()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    parts = {s.strip() for s in args.only.split(",") if s.strip()}
    for name, (part, key) in _PARTS.items():
        if name in parts:
            part_rows, found = part(args, work)
            rows += part_rows
            if key:
                details[key] = found
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {
        "machine": machine,
        "settings": settings,
        "rows": [r.to_json() for r in rows],
        "details": details,
    }
    return rows, results
