"""The GPU campaign's rows: ``python -m bench --gpu --out DIR`` (``make gpu-campaign``).

Installs Optuna offline from ``.whl/``, then runs each step of :mod:`bench.gpu_steps` as its own
process group under its own time limit, within ``--budget`` (docs/benchmarks.md, "The GPU
campaign"). Exit codes: 0 every step ok; 1 a step failed or timed out (``DIR/campaign.json`` is
still written); 2 bad usage.
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

from bench.gpu_steps import DRY, REAL, SPEEDUP_TARGET, STEPS, TRAINING_TARGET_S, Sizes, Step
from bench.paths import REPO, SUBSET
from bench.runs import timed, wait_or_stop
from job.files import write_json

WHEELS = REPO / ".whl"
WHEEL_LIST = REPO / "bench" / "wheels.txt"
BUDGET_S = 480
"""``--budget``'s default, seconds: the wheels' limit and every step's own add up to it."""
WHEELS_LIMIT_S = 30


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``--gpu`` mode's options of ``python -m bench``."""
    g = p.add_argument_group("--gpu: the GPU campaign (docs/benchmarks.md, The GPU campaign)")
    g.add_argument("--gpu", action="store_true", help="run the campaign instead of parts a-h")
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
        timed_out, seconds = timed(wait_or_stop, proc, limit, grace=5.0, group=True)
    where = str(log_path.relative_to(args.out))
    record: dict[str, Any] = {"seconds": round(seconds, 2), "limit_s": limit, "log": where}
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


def results_table(steps: dict[str, dict[str, Any]], sizes: Sizes, dry_run: bool) -> list[str]:
    """docs/benchmarks.md's table of the campaign (its columns and rows), as Markdown."""
    res = {n: r.get("result") or {} for n, r in steps.items() if r["status"] == "ok"}
    rate = res.get("tutorial", {}).get("images_per_sec")
    tut_s = rate and sizes.epochs * sizes.synthetic_train / rate  # its training, at its rate
    where = "dry run, CPU" if dry_run else "GPU"
    what = f"{where}: {sizes.epochs} epochs, {sizes.synthetic_train:,} images"
    goal = f"≤ {TRAINING_TARGET_S:g} s, ≥ {SPEEDUP_TARGET:g}×"

    def cell(step: str, key: str, fmt: str = ".2f") -> str:
        """The step's figure, or what became of the step."""
        rec = steps.get(step, {"status": "not run"})
        if rec["status"] != "ok":
            return f"{rec['status']}: {rec.get('error', '')}"[:160].rstrip(": ")
        return format(rec["result"].get(key) or 0, fmt)

    def ratio(slower: float | None, faster: float | None) -> str:
        return f"**{slower / faster:.2f}×**" if slower and faster else ""

    tutorial = f"{tut_s:.1f}" if tut_s else cell("tutorial", "")

    def only(figure: str, step: str, key: str, fmt: str, target: str = "") -> tuple[str, ...]:
        """A row the job's side alone measures."""
        return (figure, "", cell(step, key, fmt), "", target)

    def training(figure: str, step: str) -> tuple[str, ...]:
        """The tutorial's training seconds (at its rate) against a job step's."""
        job_s = res.get(step, {}).get("train_seconds")
        return (figure, tutorial, cell(step, "train_seconds"), ratio(tut_s, job_s), goal)

    steady = res.get("job", {}).get("steady_images_per_sec")
    compile_time = "… compile time: the first compiled epoch less the later ones' mean, s"
    search = f"{where}: search, {sizes.search_trials} trials"
    rows = [
        ("figure", "tutorial", "job", "speed-up", "target"),
        ("---", "---:", "---:", "---:", "---:"),
        training(f"{what}, training s", "job"),
        (
            f"{where}: training images/s after the first epoch",
            cell("tutorial", "images_per_sec", ",.0f"),
            cell("job", "steady_images_per_sec", ",.0f"),
            ratio(steady, rate),
            f"≥ {SPEEDUP_TARGET:g}×",
        ),
        training(f"{what}, `COMPILE=1`, training s", "job_compile"),
        only(compile_time, "job_compile", "first_epoch_extra_seconds", ".1f"),
        only(f"{where}: CUDA tests passed (`make test-gpu`)", "gpu_tests", "passed", "d", "all"),
        *(
            only(f"{search}, {n} a GPU: trials/min", f"search_{n}", "trials_per_minute", ".1f")
            for n in (1, 2)
        ),
    ]
    return ["| " + " | ".join(row) + " |" for row in rows]


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
    table = results_table(steps, DRY if args.dry_run else REAL, args.dry_run)
    record = {
        "dry_run": args.dry_run,
        "started_utc": started,
        "seconds": round(time.perf_counter() - t0, 1),
        "budget_s": args.budget,
        "machine": machine(args.python),
        "steps": steps,
        "table": table,
    }
    write_json(args.out / "campaign.json", record)
    info = record["machine"]
    print(f"{info.get('gpu') or 'no GPU'}, torch {info.get('torch')}, Python {info.get('python')}")
    print("\n".join(table))
    done = [f"{name} {r['status']} ({r.get('seconds', 0):.0f} s)" for name, r in steps.items()]
    print(f"\nsteps: {', '.join(done)}")
    print(f"\n{record['seconds']:.0f} s in all; results in {args.out / 'campaign.json'}")
    return 0 if all(s["status"] == "ok" for s in steps.values()) else 1
