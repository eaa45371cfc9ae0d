"""The GPU campaign's rows: ``python -m bench --gpu --out DIR`` (``make gpu-campaign``).

On an offline GPU machine, from the repository root: installs Optuna from the wheels in
``.whl/`` (``make wheels``) on ``PYTHONPATH``, then runs each step of :mod:`bench.gpu_steps` as
its own process group under its own time limit, within ``--budget``; a failed or overrun step
is recorded and the others still run (docs/benchmarks.md, "The GPU campaign"). Results:
``DIR/campaign.json``, a table on stdout, each step's output in ``DIR/logs/``. ``--dry-run``
runs every step tiny on the CPU. Exit codes: 0 every step ok; 1 a step failed or timed out
(the results are still written); 2 bad usage.
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
from pathlib import Path
from typing import Any

from bench.gpu_steps import STEPS, Step
from bench.paths import REPO, SUBSET
from bench.runs import timed, wait_or_stop
from bench.table import fixed_width
from job.files import write_json

WHEELS = REPO / ".whl"
WHEEL_LIST = REPO / "bench" / "wheels.txt"
BUDGET_S = 480
"""``--budget``'s default, seconds: the wheels' limit and every step's own add up to it."""
WHEELS_LIMIT_S = 30


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``--gpu`` mode's options of ``python -m bench``."""
    g = p.add_argument_group("--gpu: the GPU campaign (docs/benchmarks.md, The GPU campaign)")
    g.add_argument("--gpu", action="store_true", help="run the campaign instead of parts a-g")
    g.add_argument("--out", type=Path, help="--gpu: folder for campaign.json and logs")
    g.add_argument("--dry-run", action="store_true", help="--gpu: every step tiny, on the CPU")
    g.add_argument("--subset", type=Path, default=SUBSET, help="--gpu: the search's archive")
    g.add_argument("--python", default=sys.executable, help="--gpu: interpreter for the steps")
    g.add_argument(
        "--budget", type=_seconds, default=BUDGET_S, metavar="SECONDS",
        help="--gpu: the whole campaign's time; the last step gets what is left",
    )  # fmt: skip
    g.add_argument(
        "--limit", action="append", default=[], metavar="STEP=SECONDS",
        help="--gpu: replace a step's time limit (repeatable)",
    )  # fmt: skip


def _seconds(text: str) -> float:
    """A positive number of seconds, kept whole when it is (``480``, not ``480.0``, in JSON)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"takes a positive number of seconds, not {text!r}")
    return int(value) if value.is_integer() else value


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors of the ``--gpu`` mode (exit 2); sets ``args.steps`` and ``args.limits``."""
    names = [s.name for s in STEPS]
    if args.out is None:
        parser.error("--gpu needs --out DIR")
    only = args.only.split(",") if args.only else names
    if not set(only) <= set(names):
        parser.error(f"--gpu --only takes steps among {', '.join(names)}")
    args.steps = [s for s in STEPS if s.name in only]
    args.limits = {}
    for item in args.limit:
        name, _, value = item.partition("=")
        try:
            args.limits[name] = _seconds(value)
        except argparse.ArgumentTypeError:
            name = ""
        if name not in names:
            parser.error(f"--limit takes STEP=SECONDS with a step among {', '.join(names)}")


def install_wheels(site: Path, python: str, dry_run: bool) -> dict[str, Any]:
    """pip-install bench/wheels.txt from .whl/ into ``site``, offline; the step's record."""
    lines = WHEEL_LIST.read_text().splitlines()
    names = [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]
    if not WHEELS.is_dir():
        probe = subprocess.run([python, "-c", "import optuna"], capture_output=True, check=False)
        found = probe.returncode == 0
        note = "no .whl/ folder: using the interpreter's own packages"
        if not found:
            note = "no .whl/ folder and no optuna: run `make wheels` and carry .whl/"
        return {"status": "ok" if found or dry_run else "failed", "seconds": 0.0, "note": note}
    t0 = time.perf_counter()
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
    return record if ok else {**record, "error": " | ".join(tail)}


def run_step(
    step: Step, limit: float, env: dict[str, str], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Run one step as a process group under ``limit`` seconds; its record."""
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    result_path = work / "results" / f"{step.name}.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    cmd = [args.python, "-m", "bench.gpu_steps", step.name, "--work", str(work / "steps")]
    cmd += ["--out", str(args.out), "--result", str(result_path), "--limit", f"{limit:g}"]
    cmd += ["--subset", str(args.subset)] + (["--dry-run"] if args.dry_run else [])
    log_path = args.out / "logs" / f"{step.name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        timed_out, seconds = timed(wait_or_stop, proc, limit, grace=15.0, group=True)
    record: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "limit_s": limit,
        "log": str(log_path.relative_to(args.out)),
    }
    if result_path.is_file():
        record["result"] = json.loads(result_path.read_text())
    if timed_out:
        return {**record, "status": "timeout", "error": f"killed at its {limit:g} s limit"}
    if proc.returncode == 0 and "result" in record:
        return {**record, "status": "ok"}
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    error = (record.get("result") or {}).get("error") or " | ".join(lines[-3:])[-600:]
    return {**record, "status": "failed", "error": error or "no output"}


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
    if smi := shutil.which("nvidia-smi"):
        query = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        out = subprocess.run([smi, *query], capture_output=True, text=True, check=False)
        info["nvidia_smi"] = out.stdout.strip()
    return info


def _figures(name: str, r: dict[str, Any], steps: dict[str, dict[str, Any]]) -> str:
    """A step's figures in one line of the table."""
    if name == "gpu_tests" and "tests" in r:
        failed = r["failures"] + r["errors"]
        return f"{r['passed']} passed, {failed} failed, {r['skipped']} skipped"
    if name in ("job", "job_compile") and "train_seconds" in r:
        met = "met" if r["target_met"] else "missed"
        epochs = "/".join(f"{s:.2f}" for s in r["epoch_train_seconds"])
        return (
            f"training {r['train_seconds']:.2f} s (target ≤ {r['target_seconds']:g} s: {met}), "
            f"epochs {epochs} s, {r['precision']} on {r['device_name']}"
        )
    if name == "tutorial" and "images_per_sec" in r:
        job = (steps.get("job", {}).get("result") or {}).get("images_per_sec")
        text = f"{r['images_per_sec']:,.0f} img/s on {r['device']}"
        if job:
            ratio = job / r["images_per_sec"]
            text += f"; job {job:,.0f} img/s = {ratio:.1f}× (target ≥ {r['speedup_target']:g}×)"
        return text
    if name.startswith("search_") and "finished" in r:
        text = f"{r['finished']}/{r['trials_asked']} trials ({r['pruned']} pruned)"
        text += f", {r['trials_per_minute']:.1f}/min" if r.get("trials_per_minute") else ""
        if gpu := r.get("gpu"):
            text += f", GPU {gpu['mean_percent']:.0f}% mean / {gpu['p90_percent']:.0f}% p90"
        if r.get("best_val_acc") is not None:
            text += f", best {r['best_val_acc']:.4f} (trial {r['best_trial']})"
        return text
    return str(r.get("note", ""))


def summary(steps: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Table rows (step, status, seconds, figures) for the steps that ran."""
    rows = []
    for name, rec in steps.items():
        figures = _figures(name, rec.get("result") or rec, steps)
        if rec.get("error"):
            figures = f"{figures}; {rec['error']}" if figures else rec["error"]
        rows.append((name, rec["status"], f"{rec.get('seconds', 0):.1f}", figures))
    return rows


def _run_steps(args: argparse.Namespace, work: Path, t0: float) -> dict[str, dict[str, Any]]:
    steps = {"wheels": install_wheels(work / "site", args.python, args.dry_run)}
    env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INDEX="1")  # never the network
    paths = [p for p in (steps["wheels"].get("site"), str(REPO), env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for i, step in enumerate(args.steps):
        missing = [n for n in step.needs if n in steps and steps[n]["status"] != "ok"]
        if missing:
            steps[step.name] = {"status": "skipped", "error": f"needs {', '.join(missing)}"}
            continue
        limit = step.dry_limit_s if args.dry_run else step.limit_s
        if i == len(args.steps) - 1 and not args.dry_run:
            limit = max(limit, args.budget - (time.perf_counter() - t0))
        limit = args.limits.get(step.name, limit)
        print(f"campaign: {step.name} (limit {limit:.0f} s)", file=sys.stderr, flush=True)
        steps[step.name] = run_step(step, limit, env, args, work)
        print(f"campaign: {step.name} {steps[step.name]['status']}", file=sys.stderr)
    return steps


def main(args: argparse.Namespace) -> int:
    """Run the campaign; write OUT/campaign.json; print the table."""
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-campaign-"))
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        steps = _run_steps(args, work, t0)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = summary(steps)
    record = {
        "dry_run": args.dry_run,
        "started_utc": started,
        "seconds": round(time.perf_counter() - t0, 1),
        "budget_s": args.budget,
        "machine": machine(args.python),
        "steps": steps,
        "summary": [
            dict(zip(("step", "status", "seconds", "figures"), r, strict=True)) for r in rows
        ],
    }
    write_json(args.out / "campaign.json", record)
    print("\n".join(fixed_width([("step", "status", "s", "figures"), *rows], "<<>")))
    print(f"\n{record['seconds']:.0f} s in all; results in {args.out / 'campaign.json'}")
    return 0 if all(s["status"] == "ok" for s in steps.values()) else 1
