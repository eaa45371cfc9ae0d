"""The GPU campaign's rows: ``python -m bench.campaign`` (via ``bash bench/gpu_campaign.sh``).

On an offline GPU machine, from the repository root: installs Optuna from the wheels in
``.whl/`` (``bench/wheels.sh``) into a temporary folder put on ``PYTHONPATH``, then runs
each step of ``bench/campaign_steps.py`` as its own process under its own time limit —
(a) the CUDA tests, (b) the job's 8 epochs on 50,000 generated images with and without
``COMPILE=1``, (c) the tutorial pipeline's throughput on the same data, (d) a 12-trial search
on the real subset (``.gl/cifar10-subset.tgz``) at 1 and 2 trials per GPU. A step's failure is
recorded and the others still run. ``--budget SECONDS`` is the whole campaign's time on the
machine: the last step gets what the others left of it (at least its own limit). Results:
``OUT/campaign.json`` and a table on stdout; each step's output in ``OUT/logs/``.
``--dry-run`` runs every step tiny on the CPU, for CI.

Exit codes: 0 every step ok; 1 a step failed or timed out (the results are still written);
2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.paths import REPO, SUBSET
from bench.runs import wait_or_stop
from bench.table import fixed_width
from job.files import write_json

WHEELS = REPO / ".whl"
WHEEL_LIST = REPO / "bench" / "wheels.txt"
BUDGET_S = 480
"""``--budget``'s default: the whole campaign's time on the GPU machine, in seconds.

The wheels' limit and every step's own limit add up to it, so by default the last step gets
exactly its own limit unless a step before it finished early.
"""


@dataclass(frozen=True)
class Step:
    """One step: its name in ``campaign_steps.STEPS``, what it needs, and its time limits."""

    name: str
    limit_s: float
    """On the GPU; the last step gets whatever is left of ``--budget``, at least this."""
    dry_limit_s: float
    needs: tuple[str, ...] = ()


STEPS: tuple[Step, ...] = (
    Step("gpu_tests", 50, 120),
    Step("synthetic_data", 35, 60),
    Step("job", 40, 60, ("synthetic_data",)),
    Step("tutorial", 45, 60, ("synthetic_data",)),
    Step("search_data", 20, 60),
    Step("search_1", 105, 120, ("wheels", "search_data")),
    Step("search_2", 85, 120, ("wheels", "search_data")),
    Step("job_compile", 70, 60, ("synthetic_data",)),
)
WHEELS_LIMIT_S = 30


def install_wheels(site: Path, python: str, dry_run: bool) -> dict[str, Any]:
    """pip-install bench/wheels.txt from .whl/ into ``site`` offline; the step's record."""
    names = [
        line.split()[0]
        for line in WHEEL_LIST.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    t0 = time.perf_counter()
    if not WHEELS.is_dir():
        found = _importable(python, "optuna")
        status = "ok" if found or dry_run else "failed"
        note = (
            "no .whl/ folder: using the interpreter's own packages"
            if found
            else "no .whl/ folder and no optuna: run `bash bench/wheels.sh .whl` and carry .whl/"
        )
        return {"status": status, "seconds": 0.0, "note": note, "site": None}
    cmd = [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    cmd += ["--find-links", str(WHEELS), "--target", str(site), *names]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WHEELS_LIMIT_S)
        ok, tail = proc.returncode == 0, proc.stderr.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        ok, tail = False, [f"pip did not finish within {WHEELS_LIMIT_S} s"]
    record: dict[str, Any] = {
        "status": "ok" if ok else "failed",
        "seconds": time.perf_counter() - t0,
        "limit_s": WHEELS_LIMIT_S,
        "packages": names,
        "site": str(site) if ok else None,
    }
    if not ok:
        record["error"] = " | ".join(tail)
    return record


def _importable(python: str, module: str) -> bool:
    probe = [python, "-c", f"import {module}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def run_step(
    step: Step, limit: float, env: dict[str, str], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Run one step as a process group under ``limit`` seconds; return its record."""
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result_path = work / "results" / f"{step.name}.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    cmd = [args.python, "-m", "bench.campaign_steps", step.name, "--work", str(work / "steps")]
    cmd += ["--out", str(args.out), "--result", str(result_path), "--limit", f"{limit:g}"]
    cmd += ["--subset", str(args.subset)] + (["--dry-run"] if args.dry_run else [])
    log_path = logs / f"{step.name}.log"
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        timed_out = wait_or_stop(proc, limit, grace=15.0, group=True)
    record: dict[str, Any] = {
        "seconds": round(time.perf_counter() - t0, 2),
        "limit_s": limit,
        "log": str(log_path.relative_to(args.out)),
    }
    if result_path.is_file():
        record["result"] = json.loads(result_path.read_text())
    if timed_out:
        record["status"] = "timeout"
        record["error"] = f"killed at its {limit:g} s limit"
    elif proc.returncode == 0 and "result" in record:
        record["status"] = "ok"
    else:
        record["status"] = "failed"
        record["error"] = (record.get("result") or {}).get("error") or _last_lines(log_path)
    return record


def _last_lines(path: Path, n: int = 3) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:] or "no output"


def machine(python: str) -> dict[str, Any]:
    """The interpreter, torch, CUDA and GPU this campaign ran on (best effort)."""
    info: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count()}
    probe = (
        "import json, platform, torch; print(json.dumps({'python': platform.python_version(), "
        "'torch': torch.__version__, 'cuda': torch.version.cuda, "
        "'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))"
    )
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        info.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    smi = shutil.which("nvidia-smi")
    if smi:
        query = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        out = subprocess.run([smi, *query], capture_output=True, text=True, check=False)
        info["nvidia_smi"] = out.stdout.strip()
    return info


def summary(steps: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Table rows (step, status, seconds, figures) for the steps that ran."""

    def res(name: str) -> dict[str, Any]:
        return steps.get(name, {}).get("result") or {}

    rows = []
    for name, rec in steps.items():
        r = res(name)
        figures = ""
        if name == "gpu_tests" and "tests" in r:
            figures = f"{r['passed']} passed, {r['failures'] + r['errors']} failed, "
            figures += f"{r['skipped']} skipped"
        elif name in ("job", "job_compile") and "train_seconds" in r:
            steady = r.get("steady_images_per_sec")
            figures = (
                f"training {r['train_seconds']:.2f} s (target ≤ {r['target_seconds']:g} s: "
                f"{'met' if r['target_met'] else 'missed'}), epochs "
                + "/".join(f"{s:.2f}" for s in r["epoch_train_seconds"])
                + f" s, steady {steady:,.0f} img/s" * (steady is not None)
                + f", {r['precision']} on {r['device_name']}"
            )
        elif name == "tutorial" and "images_per_sec" in r:
            job = res("job")
            figures = f"{r['images_per_sec']:,.0f} img/s on {r['device']}"
            if job.get("images_per_sec"):
                ratio = job["images_per_sec"] / r["images_per_sec"]
                figures += f"; job {job['images_per_sec']:,.0f} img/s = {ratio:.1f}× "
                figures += f"(target ≥ {r['speedup_target']:g}×)"
                if job.get("steady_images_per_sec"):
                    figures += f", steady {job['steady_images_per_sec'] / r['images_per_sec']:.1f}×"
        elif name == "synthetic_data" and "train_images" in r:
            figures = f"{r['train_images']:,}/{r['test_images']:,} images, {r['archive_mb']:.0f} MB"
        elif name == "search_data" and "mb" in r:
            figures = f"{Path(r['archive']).name}, {r['mb']:.1f} MB"
        elif name.startswith("search_") and "finished" in r:
            tpm = r.get("trials_per_minute")
            gpu = r.get("gpu") or {}
            figures = f"{r['finished']}/{r['trials_asked']} trials ({r['pruned']} pruned)"
            figures += f", {tpm:.1f}/min" if tpm else ""
            if gpu:
                figures += f", GPU {gpu['mean_percent']:.0f}% mean / {gpu['p90_percent']:.0f}% p90"
            if r.get("best_val_acc") is not None:
                figures += f", best {r['best_val_acc']:.4f} (trial {r['best_trial']})"
            if r.get("baseline_val_acc") is not None:
                figures += f" vs baseline {r['baseline_val_acc']:.4f}"
        elif name == "wheels":
            figures = rec.get("note") or ", ".join(rec.get("packages", []))
        if rec.get("error"):
            figures = f"{figures}; {rec['error']}" if figures else rec["error"]
        rows.append((name, rec["status"], f"{rec.get('seconds', 0):.1f}", figures))
    return rows


_COLUMNS = ("step", "status", "seconds", "figures")


def render(rows: list[tuple[str, str, str, str]]) -> str:
    """A plain-text table of the summary rows (the figures unpadded, last)."""
    return "\n".join(fixed_width([("step", "status", "s", "figures"), *rows], "<<>"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/gpu_campaign.sh",
        description="The GPU campaign: CUDA tests, job vs tutorial on 50,000 generated "
        "images, a 12-trial search at 1 and 2 trials per GPU. Exit 0: every step ok.",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for campaign.json and logs")
    p.add_argument("--dry-run", action="store_true", help="every step tiny, on the CPU")
    p.add_argument("--subset", type=Path, default=SUBSET)
    p.add_argument("--python", default=sys.executable, help="interpreter for the steps")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    names = ",".join(s.name for s in STEPS)
    p.add_argument("--only", help=f"comma-separated steps to run (default: all): {names}")
    p.add_argument(
        "--budget",
        type=_seconds,
        default=BUDGET_S,
        metavar="SECONDS",
        help=f"the whole campaign's time; the last step gets what is left (default {BUDGET_S})",
    )
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="STEP=SECONDS",
        help="replace a step's time limit (repeatable)",
    )
    return p


def _seconds(text: str) -> float:
    """A positive number of seconds, kept whole when it is (``480``, not ``480.0``, in JSON)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"takes a positive number of seconds, not {text!r}")
    return int(value) if value.is_integer() else value


def _limits(items: list[str], parser: argparse.ArgumentParser) -> dict[str, float]:
    names = {s.name for s in STEPS}
    limits = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in names or seconds <= 0:
            parser.error(f"--limit takes STEP=SECONDS with a step among {', '.join(sorted(names))}")
        limits[name] = seconds
    return limits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the campaign; write OUT/campaign.json; print the table."""
    parser = _parser()
    args = parser.parse_args(argv)
    chosen = [s for s in STEPS if not args.only or s.name in args.only.split(",")]
    if args.only and len(chosen) != len(args.only.split(",")):
        parser.error(f"--only takes steps among {', '.join(s.name for s in STEPS)}")
    limits = _limits(args.limit, parser)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-campaign-"))
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    steps: dict[str, dict[str, Any]] = {}
    try:
        steps["wheels"] = install_wheels(work / "site", args.python, args.dry_run)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        paths = [p for p in (steps["wheels"].get("site"), str(REPO)) if p]
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        for i, step in enumerate(chosen):
            missing = [n for n in step.needs if n in steps and steps[n]["status"] != "ok"]
            if missing:
                steps[step.name] = {"status": "skipped", "error": f"needs {', '.join(missing)}"}
                continue
            limit = step.dry_limit_s if args.dry_run else step.limit_s
            if i == len(chosen) - 1 and not args.dry_run:
                limit = max(limit, args.budget - (time.perf_counter() - t0))
            limit = limits.get(step.name, limit)
            print(f"campaign: {step.name} (limit {limit:.0f} s)", file=sys.stderr, flush=True)
            steps[step.name] = run_step(step, limit, env, args, work)
            print(f"campaign: {step.name} {steps[step.name]['status']}", file=sys.stderr)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = summary(steps)
    record = {
        "dry_run": args.dry_run,
        "started_utc": started,
        "seconds": round(time.perf_counter() - t0, 1),
        "budget_s": args.budget,
        "machine": machine(args.python),
        "steps": steps,
        "summary": [dict(zip(_COLUMNS, r, strict=True)) for r in rows],
    }
    write_json(args.out / "campaign.json", record)
    print(render(rows))
    print(f"\n{record['seconds']:.0f} s in all; results in {args.out / 'campaign.json'}")
    return 0 if all(s["status"] == "ok" for s in steps.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
