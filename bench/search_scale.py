"""The search at scale's rows (docs/benchmarks.md): 1,000 trials on 4 drivers x 8 slots on a
fresh PostgreSQL, and 300 trials on 1 driver x 8 slots on SQLite; per row, the driver's own
seconds per trial (median and p95, first 100 and last 100 finished trials), the sampler's
seconds per trial, SQL statements per trial, PostgreSQL connections held, the drivers' CPU
share, and the finished total against N..N+W-1; plus a PNG of the sampler's CPU seconds against
the study's finished trials.

    python -m bench.search_scale                                  # both rows
    python -m bench.search_scale --backends sqlite --sqlite-trials 100 --slots 4
    python -m bench.search_scale --pg-trials 200 --drivers 2 --json scale.json

Each driver is ``python -m search run --launcher local --confirm 0 --cold-start`` (default
TPE sampler and median pruner), started through ``bench/scale_probe.py``, which measures it
from inside and makes its trials ``bench/scale_job.py``: a few epochs of
:data:`bench.scale_job.EPOCH_SECONDS`, no training, so the driver, not the job, sets the
pace. A trial's driver cost is the CPU seconds of the worker thread that took and ran it
(sampling, the storage's client side, launching, recording events, reaping); its wall
seconds (the same work plus the storage's round trips and the waits for the cores the
other workers hold, without the waits on the job, the budget or the driver's lock) are
shown beside it (see ``bench/scale_probe.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.paths import OUTPUT, REPO
from bench.runs import search_command

STUDY = "scale"
EPOCHS = 3
WINDOW = 100
"""Finished trials in the first and the last window of a row."""
DEADLINE = 3600.0
"""Seconds a row may take before its drivers are stopped."""


@dataclass(frozen=True)
class Case:
    """One row: a backend, the study's budget, drivers and slots per driver."""

    backend: str
    trials: int
    drivers: int
    slots: int

    @property
    def workers(self) -> int:
        return self.drivers * self.slots


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4) if values else float("nan"),
        "p95": round(_pct(values, 0.95), 4),
    }


class _Connections:
    """Samples pg_stat_activity's client connections to the database every 0.5 s."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("+psycopg2", "")
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Connections:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg2

        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        with contextlib.closing(psycopg2.connect(self.url)) as db:
            db.autocommit = True
            while not self._stop.wait(0.5):
                with db.cursor() as cursor:
                    cursor.execute(query)
                    row = cursor.fetchone()
                    self.samples.append(int(row[0]) if row else 0)


def _drivers(case: Case, url: str, out: Path) -> tuple[list[int], float]:
    """Start the drivers, wait for them; their exit codes and the wall seconds."""
    study_out = out / "study"
    env = {k: v for k, v in os.environ.items() if k not in ("TRIALS", "SEARCH_STORAGE")}
    env["PYTHONUNBUFFERED"] = "1"
    procs = []
    started = time.monotonic()
    for index in range(case.drivers):
        cmd = search_command(
            case.trials,
            {"EPOCHS": str(EPOCHS)},
            "--parallel", str(case.slots), "--launcher", "local", "--gpus", "none",
            "--cold-start", "--storage", url, "--study-name", STUDY,
            "--output", str(study_out), "--seed", str(index),
        )  # fmt: skip
        cmd[1:3] = ["-m", "bench.scale_probe"]  # python -m search run, measured
        log = (out / f"driver-{index}.log").open("wb")
        probe = {"SCALE_PROBE": str(out / f"probe-{index}.jsonl")}
        procs.append(subprocess.Popen(cmd, cwd=REPO, env={**env, **probe}, stdout=log, stderr=log))
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, DEADLINE - (time.monotonic() - started))))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes, time.monotonic() - started


def run_case(case: Case, out: Path) -> dict[str, Any]:
    """Run one row in ``out`` (emptied first); its figures."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    connections: list[int] = []
    server = ""
    if case.backend == "postgresql":
        from bench.postgres import Postgres

        pg = Postgres()
        pg.start()
        try:
            server = pg.version()
            with _Connections(pg.url) as sampled:
                codes, wall = _drivers(case, pg.url, out)
            connections = sampled.samples
            result = _measure(case, pg.url, out, codes, wall)
        finally:
            pg.remove()
    else:
        url = f"sqlite:///{out / 'study.db'}"
        codes, wall = _drivers(case, url, out)
        result = _measure(case, url, out, codes, wall)
        import sqlite3

        server = f"SQLite {sqlite3.sqlite_version}"
    result["database"] = server
    if connections:
        result["connections"] = {
            "max": max(connections),
            "median": statistics.median(connections),
        }
    return result


def _measure(case: Case, url: str, out: Path, codes: list[int], wall: float) -> dict[str, Any]:
    from optuna.trial import TrialState

    from search.study import load_study

    trials = load_study(url, STUDY).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    records: list[dict[str, Any]] = []
    processes: list[dict[str, Any]] = []
    for path in sorted(out.glob("probe-*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            (records if record["kind"] == "trial" else processes).append(record)
    by_number = {t.number: t for t in trials}
    counted = [r for r in records if _finished(by_number.get(r["number"]))]
    counted.sort(key=lambda r: r["t_done"])
    done_at = sorted(t.datetime_complete.timestamp() for t in finished if t.datetime_complete)
    first, last = counted[:WINDOW], counted[-WINDOW:]
    cpu_first = _summary([r["cpu"] for r in first])
    cpu_last = _summary([r["cpu"] for r in last])
    cpu = sum(p["cpu"] for p in processes)
    queries = sum(p["queries"] for p in processes)
    missing = [t.number for t in finished if not _events_recorded(t)]
    return {
        "backend": case.backend,
        "trials": case.trials,
        "drivers": case.drivers,
        "slots": case.slots,
        "driver_exits": codes,
        "wall_seconds": round(wall, 1),
        "finished": len(finished),
        "finished_within": [case.trials, case.trials + case.workers - 1],
        "finished_ok": case.trials <= len(finished) <= case.trials + case.workers - 1,
        "states": _count(t.state.name for t in trials),
        "events_missing": missing,
        "trials_measured": len(counted),
        "cpu_all": _summary([r["cpu"] for r in counted]),
        "cpu_first": cpu_first,
        "cpu_last": cpu_last,
        "growth": round(cpu_last["median"] / cpu_first["median"], 2)
        if cpu_first["median"]
        else None,
        "own_first": _summary([r["own"] for r in first]),
        "own_last": _summary([r["own"] for r in last]),
        "sampler_first": _summary([r["sampler_cpu"] for r in first]),
        "sampler_last": _summary([r["sampler_cpu"] for r in last]),
        "sampler_wall_last": _summary([r["sampler"] for r in last]),
        "lock_wait": _summary([r["lock"] for r in counted]),
        "queries_per_trial": _summary([r["queries"] for r in counted]),
        "queries_per_finished_trial": round(queries / max(1, len(finished)), 1),
        "cpu_seconds_per_finished_trial": round(cpu / max(1, len(finished)), 4),
        "cpu_share": [round(p["cpu"] / p["wall"], 2) for p in processes if p["wall"] > 0],
        "trials_per_minute": round(60 * len(finished) / wall, 1),
        "sampler_curve": [
            [bisect_right(done_at, r["t_take"]), round(r["sampler_cpu"], 5)] for r in counted
        ],
    }


def _ratio(last: float, first: float) -> float | None:
    return round(last / first, 2) if first else None


def _finished(trial: Any) -> bool:
    return trial is not None and trial.state.name in ("COMPLETE", "PRUNED")


def _events_recorded(trial: Any) -> bool:
    """Every epoch the trial ran reported to Optuna, and the run's attributes recorded."""
    epochs = int(trial.user_attrs.get("epochs", 0))
    steps = sorted(trial.intermediate_values)
    complete = trial.state.name == "COMPLETE"
    return (
        epochs >= 1
        and steps == list(range(1, epochs + 1))
        and (not complete or epochs == EPOCHS)
        and "launch_seconds" in trial.user_attrs
        and trial.user_attrs.get("exit_code") is not None
    )


def _count(names: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def plot(results: list[dict[str, Any]], path: Path, label: str) -> None:
    """The sampler's CPU seconds per trial against the study's finished trials, a series a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for result in results:
        xs = [x for x, _ in result["sampler_curve"]]
        ys = [1000 * y for _, y in result["sampler_curve"]]
        name = f"{result['backend']}: {result['drivers']} x {result['slots']} slots"
        ax.scatter(xs, ys, s=4, alpha=0.5, label=name)
    ax.set_xlabel("finished trials in the study when the trial was taken")
    ax.set_ylabel("sampler CPU ms per trial (TPE)")
    ax.set_title(f"The sampler's CPU time per trial{f' ({label})' if label else ''}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(results: list[dict[str, Any]]) -> str:
    """The rows as Markdown."""
    lines = [
        "| row | finished (N..N+W-1) | driver CPU s/trial, first 100: median / p95 | last "
        "100: median / p95 | growth | wall s/trial last 100: median / p95 | sampler CPU "
        "s/trial last 100 | SQL per trial (worker / all) | connections max | driver CPU share "
        "| trials/min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        row = f"{r['backend']} {r['trials']} trials, {r['drivers']} x {r['slots']}"
        within = f"{r['finished']} ({r['finished_within'][0]}..{r['finished_within'][1]})"
        conn = r.get("connections", {}).get("max", "n/a")
        lines.append(
            f"| {row} | {within} | {r['cpu_first']['median']:.3f} / {r['cpu_first']['p95']:.3f} "
            f"| {r['cpu_last']['median']:.3f} / {r['cpu_last']['p95']:.3f} | {r['growth']}x "
            f"| {r['own_last']['median']:.3f} / {r['own_last']['p95']:.3f} "
            f"| {r['sampler_last']['median']:.3f} | {r['queries_per_trial']['median']:.0f} / "
            f"{r['queries_per_finished_trial']:.0f} | {conn} "
            f"| {', '.join(f'{s:.2f}' for s in r['cpu_share'])} | {r['trials_per_minute']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.search_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backends", default="postgresql,sqlite", help="rows to run, comma-separated")
    p.add_argument("--pg-trials", type=int, default=1000, help="PostgreSQL row's budget")
    p.add_argument("--drivers", type=int, default=4, help="PostgreSQL row's drivers")
    p.add_argument("--sqlite-trials", type=int, default=300, help="SQLite row's budget")
    p.add_argument("--slots", type=int, default=8, help="trials at once per driver")
    p.add_argument("--label", default="", help="a word for the rows, e.g. before or after")
    p.add_argument("--output", type=Path, default=OUTPUT / "bench-search-scale")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"postgresql", "sqlite"}
    if unknown or not backends:
        p.error(f"--backends takes postgresql and/or sqlite, not {sorted(unknown) or 'nothing'}")
    if min(args.pg_trials, args.sqlite_trials, args.drivers, args.slots) < 1:
        p.error("--pg-trials, --sqlite-trials, --drivers and --slots must be at least 1")
    cases = [
        Case("postgresql", args.pg_trials, args.drivers, args.slots)
        if b == "postgresql"
        else Case("sqlite", args.sqlite_trials, 1, args.slots)
        for b in backends
    ]
    results = []
    for case in cases:
        try:
            results.append(run_case(case, args.output / case.backend))
        except RuntimeError as exc:  # PostgresMissing: no server binaries
            print(f"search_scale: {case.backend}: {exc}", file=sys.stderr)
            return 2
    png = args.output / "sampler-seconds.png"
    plot(results, png, args.label)
    report = {
        "command": " ".join(["python -m bench.search_scale", *sys.argv[1:]]),
        "label": args.label,
        "machine": _machine(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "plot": str(png),
        "rows": results,
    }
    (args.output / "scale.json").write_text(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"{report['command']} on {report['machine']}")
    print(table(results))
    print(f"plot: {png}")
    ok = all(r["finished_ok"] and not r["events_missing"] for r in results)
    ok = ok and all(code == 0 for r in results for code in r["driver_exits"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
