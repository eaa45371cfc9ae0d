"""The GPU campaign's rows, one step each, each run as its own process by :mod:`bench.gpu`.

``python -m bench.gpu_steps STEP --work W --out O --result R [--dry-run] [--subset S]
[--limit SECONDS]`` runs one step and writes its figures to ``R`` as JSON; a failure exits
non-zero with one sentence on stderr (a step that stops at its time limit still writes what
it measured). Big files (archives, decoded caches, trial folders) stay in ``W``; the small
records worth keeping (histories, metrics, trials.csv, nvidia-smi samples) are copied to ``O``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.paths import REPO, SUBSET
from bench.runs import data_vars, decode, read_trials, search_command, timed, wait_or_stop
from job.contract import HISTORY_JSON, METRICS_JSON
from job.files import write_json


class StepError(Exception):
    """The step failed; the message says why in one sentence. ``result``: what it measured all
    the same (a failure that still measured something), written as the step's result."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the real campaign on a GPU, or the dry run on a CPU."""

    synthetic_train: int
    synthetic_test: int
    width: float
    epochs: int
    batch_size: int
    tutorial_steps: int
    tutorial_warmup: int
    search_trials: int
    job_env: dict[str, str] = field(default_factory=dict)
    """Extra job variables for every job the campaign starts (the dry run's DEVICE=cpu)."""


REAL = Sizes(50_000, 10_000, 1.0, 8, 400, 60, 5, 12)
DRY = Sizes(200, 100, 0.125, 2, 50, 2, 1, 2, {"DEVICE": "cpu"})
TRAINING_TARGET_S = 5.0
"""(b): the job's 8 epochs on 50,000 images should train in at most this many seconds."""
SPEEDUP_TARGET = 8.0
"""(c): the job's training throughput should be at least this multiple of the tutorial's."""


@dataclass(frozen=True)
class Context:
    """What every step gets: the sizes, the folders, the subset archive and the time limit."""

    sizes: Sizes
    dry_run: bool
    work: Path
    out: Path
    subset: Path
    limit: float

    @property
    def synthetic_archive(self) -> Path:
        """The generated 50,000/10,000 archive of (b) and (c)."""
        return self.work / "synthetic" / "cifar10.tgz"

    @property
    def search_archive(self) -> Path:
        """The real subset (a generated tiny one in the dry run) that (d) searches on."""
        return self.work / "tiny-subset.tgz" if self.dry_run else self.subset


def gpu_tests(ctx: Context) -> dict[str, Any]:
    """``pytest -m gpu tests/gpu``: counts of passed, failed, skipped tests."""
    report = ctx.out / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q"]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={report}"]
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    if not report.is_file():
        raise StepError(f"pytest exited {proc.returncode} without writing {report.name}")
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    result = {**counts, "passed": passed, "failed_tests": failed}
    if proc.returncode != 0:
        raise StepError(f"{len(failed)} CUDA test(s) failed: {', '.join(failed)[:300]}", result)
    if not ctx.dry_run and counts["skipped"] == counts["tests"]:
        raise StepError("every CUDA test skipped: this machine has no usable CUDA device", result)
    return result


def synthetic_data(ctx: Context) -> dict[str, Any]:
    """Generate the CIFAR-shaped archive and decode it once into the job's cache."""
    from bench.subset import write_synthetic

    s = ctx.sizes
    _, written = timed(write_synthetic, ctx.synthetic_archive, s.synthetic_train, s.synthetic_test)
    _, decoded = timed(decode, ctx.synthetic_archive, ctx.work / "synthetic-cache")
    return {
        "train_images": s.synthetic_train,
        "test_images": s.synthetic_test,
        "archive_mb": ctx.synthetic_archive.stat().st_size / 1e6,
        "write_seconds": written,
        "decode_seconds": decoded,
    }


def job(ctx: Context, compile_: bool = False) -> dict[str, Any]:
    """The full recipe on the generated data as ``python -m job``; its training seconds."""
    from bench.runs import WallConfig, run_job

    s = ctx.sizes
    name = "job-compile" if compile_ else "job"
    env = {**s.job_env, "COMPILE": "1"} if compile_ else s.job_env
    cfg = WallConfig(s.width, 0, 0, s.epochs, s.batch_size)
    res = run_job(
        ctx.synthetic_archive, cfg, ctx.work / name, env, data_dir=ctx.work / "synthetic-cache"
    )
    (ctx.out / name).mkdir(parents=True, exist_ok=True)
    for file in (METRICS_JSON, HISTORY_JSON):
        shutil.copy2(ctx.work / name / "output" / file, ctx.out / name / file)
    metrics, history = res.details["metrics"], res.details["history"]
    epochs = [h["train_seconds"] for h in history if "train_seconds" in h]  # s, one an epoch
    train_s = float(metrics["train_seconds"])
    n = int(metrics["n_train"])
    # The epochs after the first: warm-up (cudnn benchmark, allocator, compiling) left out.
    steady = statistics.fmean(epochs[1:]) if epochs[1:] else None
    return {
        "train_seconds": train_s,
        "epoch_train_seconds": epochs,
        "images_per_sec": n * len(epochs) / train_s,
        "steady_images_per_sec": steady and n / steady,
        "first_epoch_extra_seconds": steady and epochs[0] - steady,  # compiling, with COMPILE=1
        "eval_seconds": sum(h.get("eval_seconds", 0.0) for h in history),
        "wall_seconds": res.seconds,
        "val_acc": res.val_acc,
        "precision": metrics["precision"],
        "device_name": metrics["device_name"],
        "target_seconds": TRAINING_TARGET_S,
        "target_met": train_s <= TRAINING_TARGET_S,
    }


def tutorial(ctx: Context) -> dict[str, Any]:
    """The tutorial pipeline's steady-state training images/s on the same data and device."""
    import torch

    from bench.throughput import tutorial_images_per_sec
    from bench.tutorial import extract, get_default_device

    s = ctx.sizes
    png_root, extracted = timed(extract, ctx.synthetic_archive, ctx.work / "tutorial-png")
    # The tutorial's own choice of device (the GPU when there is one); the CPU in the dry run.
    device = torch.device("cpu") if ctx.dry_run else get_default_device()
    steps, warmup = s.tutorial_steps, s.tutorial_warmup
    rate = tutorial_images_per_sec(png_root, s.width, s.batch_size, steps, warmup, device)
    return {
        "images_per_sec": rate,
        "device": str(device),
        "steps": s.tutorial_steps,
        "warmup": s.tutorial_warmup,
        "extract_seconds": extracted,
        "speedup_target": SPEEDUP_TARGET,
    }


def search_data(ctx: Context) -> dict[str, Any]:
    """Decode the search's archive into the cache every trial shares (untimed by the search)."""
    archive = ctx.search_archive
    if ctx.dry_run:
        from bench.subset import write_synthetic

        write_synthetic(archive, ctx.sizes.synthetic_train, ctx.sizes.synthetic_test)
    elif not archive.is_file():
        raise StepError(
            f"no subset archive at {archive}: make it with `make gpu-data` and carry .gl/ to "
            "this machine"
        )
    _, seconds = timed(decode, archive, ctx.work / "search-cache")
    return {"archive": str(archive), "mb": archive.stat().st_size / 1e6, "decode_seconds": seconds}


def search(ctx: Context, per_gpu: int) -> dict[str, Any]:
    """A study of ``search_trials`` trials at ``per_gpu`` trials per GPU: rate, GPU use, best."""
    s = ctx.sizes
    output = ctx.work / f"search-{per_gpu}"
    shutil.rmtree(output, ignore_errors=True)
    options = ["--launcher", "local", "--seed", "0", "--study-name", f"campaign-{per_gpu}"]
    options += ["--output", str(output)]
    per = ["--gpus", "none", "--parallel"] if ctx.dry_run else ["--trials-per-gpu"]
    options += [*per, str(per_gpu)]
    job_env = {**data_vars(ctx.search_archive, ctx.work / "search-cache"), **s.job_env}
    if ctx.dry_run:
        job_env.update({"MODEL_WIDTH": f"{s.width:g}", "EPOCHS": str(s.epochs)})
    cmd = search_command(s.search_trials, job_env, *options)
    record = ctx.out / f"search-{per_gpu}"
    record.mkdir(parents=True, exist_ok=True)
    samples = record / "nvidia-smi.csv"
    sampler = None if ctx.dry_run else _start_sampler(samples)
    proc = subprocess.Popen(cmd, cwd=REPO)
    # Stop the study in time to collect what it did: SIGTERM makes the driver stop its trials
    # and write trials.csv (exit 143), well before the campaign's hard limit for the step.
    stopped, wall = timed(wait_or_stop, proc, max(10.0, ctx.limit - 30.0), grace=25)
    if sampler is not None:
        sampler.terminate()
        sampler.wait()
    for name in ("trials.csv", "best_params.json"):
        if (output / name).is_file():
            shutil.copy2(output / name, record / name)
    result = {
        "trials_per_gpu": per_gpu,
        "trials_asked": s.search_trials,
        **_study(output, wall),
        "gpu": _utilisation(samples) if sampler is not None else None,
        "exit_code": proc.returncode,
        "stopped_at_limit": stopped,
    }
    if stopped:
        raise StepError(f"stopped at the step's limit after {result['finished']} trials", result)
    if proc.returncode != 0:
        raise StepError(f"python -m search run exited {proc.returncode}", result)
    return result


def _study(output: Path, wall: float) -> dict[str, Any]:
    """What a study left in ``trials.csv`` and ``best_params.json``, and its pace."""
    rows = read_trials(output / "trials.csv")
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    best_file = output / "best_params.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else {}
    baseline = next((r for r in rows if r["number"] == "0"), {})
    launch = [float(r["launch_seconds"]) for r in rows if r.get("launch_seconds")]
    pairs = (("complete", "COMPLETE"), ("pruned", "PRUNED"), ("failed", "FAIL"))
    states = {key: sum(r["state"] == state for r in rows) for key, state in pairs}
    return {
        "finished": len(finished),
        **states,
        "wall_seconds": wall,
        "trials_per_minute": len(finished) / (wall / 60) if wall > 0 else None,
        "best_val_acc": best.get("val_acc"),
        "best_trial": best.get("trial"),
        "best_params": best.get("params"),
        "baseline_val_acc": float(baseline["val_acc"]) if baseline.get("val_acc") else None,
        "baseline_state": baseline.get("state"),
        "launch_seconds_median": statistics.median(launch) if launch else None,
    }


def _start_sampler(path: Path) -> subprocess.Popen[bytes] | None:
    """nvidia-smi sampling GPU utilisation every 500 ms into ``path`` (None: no nvidia-smi)."""
    if not (exe := shutil.which("nvidia-smi")):
        return None
    query = "--query-gpu=timestamp,index,utilization.gpu,memory.used"
    with path.open("wb") as f:
        return subprocess.Popen(
            [exe, query, "--format=csv,noheader,nounits", "-lms", "500"], stdout=f
        )


def _utilisation(path: Path) -> dict[str, Any] | None:
    """Mean, median, p90 and max of the sampled utilisation (%), and peak memory (MiB)."""
    util, memory = [], []
    for row in csv.reader(path.read_text().splitlines() if path.is_file() else []):
        with contextlib.suppress(IndexError, ValueError):  # a last line cut when it was stopped
            busy, used = float(row[2]), float(row[3])  # %, MiB
            util.append(busy)
            memory.append(used)
    if not util:
        return None
    ordered = sorted(util)
    return {
        "samples": len(util),
        "mean_percent": statistics.fmean(util),
        "p90_percent": ordered[int(0.9 * (len(ordered) - 1))],
        "max_percent": ordered[-1],
        "busy_fraction": sum(u > 0 for u in util) / len(util),
        "max_memory_mib": max(memory),
    }


@dataclass(frozen=True)
class Step:
    """One step of the campaign: what it runs, what it needs, and its time limits (seconds)."""

    name: str
    run: Callable[[Context], dict[str, Any]]
    limit_s: float
    """On the GPU; the last step gets whatever is left of ``--budget``, at least this."""
    dry_limit_s: float
    needs: tuple[str, ...] = ()


STEPS: tuple[Step, ...] = (
    Step("gpu_tests", gpu_tests, 50, 120),
    Step("synthetic_data", synthetic_data, 35, 60),
    Step("job", job, 40, 60, ("synthetic_data",)),
    Step("tutorial", tutorial, 45, 60, ("synthetic_data",)),
    Step("search_data", search_data, 20, 60),
    Step("search_1", lambda ctx: search(ctx, 1), 105, 120, ("wheels", "search_data")),
    Step("search_2", lambda ctx: search(ctx, 2), 85, 120, ("wheels", "search_data")),
    Step("job_compile", lambda ctx: job(ctx, compile_=True), 70, 180, ("synthetic_data",)),
)
"""Every step, in the campaign's order (compiling last: the most likely to overrun)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; write its result JSON; 0 on success, 1 on failure (sentence on stderr)."""
    p = argparse.ArgumentParser(prog="python -m bench.gpu_steps")
    p.add_argument("step", choices=[s.name for s in STEPS])
    for option in ("--work", "--out", "--result"):
        p.add_argument(option, type=Path, required=True)
    p.add_argument("--subset", type=Path, default=SUBSET)
    p.add_argument("--limit", type=float, default=600.0, help="the step's time limit, s")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    sizes = DRY if args.dry_run else REAL
    ctx = Context(sizes, args.dry_run, args.work, args.out, args.subset.resolve(), args.limit)
    for folder in (ctx.work, ctx.out):
        folder.mkdir(parents=True, exist_ok=True)
    code = 0
    try:
        result = next(s for s in STEPS if s.name == args.step).run(ctx)
    except StepError as exc:
        result, code = {**exc.result, "error": str(exc)}, 1
        print(f"campaign step {args.step}: {exc}.", file=sys.stderr)
    write_json(args.result, result)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
