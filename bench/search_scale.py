"""The search at scale's rows (docs/benchmarks.md): 1,000 trials on 4 drivers x 8 slots on a
fresh PostgreSQL, and 300 trials on 1 driver x 8 slots on SQLite, measured from outside; fewer
with, for instance, ``--backends sqlite --sqlite-trials 100 --slots 4``. Each driver runs
against the stand-in job (:func:`testkit.job.shim`), so the driver sets the pace;
docs/benchmarks.md, "The search at scale", says how each figure is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.paths import OUTPUT, command_parser
from bench.runs import search_command
from job.cpuinfo import model_name
from job.files import write_json
from testkit import REPO
from testkit.job import shim
from testkit.postgres import PostgresMissing, Server

STUDY = "scale"
EPOCHS = 3
EPOCH_SECONDS = 0.15
"""Seconds one epoch of the stand-in takes: short, so that the driver sets the pace."""
WINDOW = 100
"""Finished trials in the first and the last window of a row."""
STEP = 10
"""Finished trials per CPU reading within a window (its median and p95 are over these)."""
SAMPLE_EVERY = 0.25
"""Seconds between two readings of the drivers' CPU time (and of PostgreSQL's connections)."""
DEADLINE = 3600.0
"""Seconds a row may take before its drivers are stopped."""
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Case:
    """One row: a backend, the study's budget, drivers and slots per driver."""

    backend: str
    trials: int
    drivers: int
    slots: int


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of process ``pid`` (its threads, not its children); None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


class _Sampler:
    """Reads the drivers' CPU seconds (and PostgreSQL's client connections) until stopped."""

    def __init__(self, pids: list[int], pg_url: str | None) -> None:
        self.pids, self.pg_url = pids, pg_url
        self.last: dict[int, float] = {}
        self.samples: list[tuple[float, float]] = [(time.time(), 0.0)]
        self.connections: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> None:
        with self._lock:  # the thread and a driver's exit both read; times stay in order
            for pid in self.pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    self.last[pid] = seconds
            self.samples.append((time.time(), sum(self.last.values())))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.read()

    def _run(self) -> None:
        db = _connect(self.pg_url) if self.pg_url else None
        while not self._stop.wait(SAMPLE_EVERY):
            self.read()
            if db is not None:
                with contextlib.suppress(Exception), db.cursor() as cursor:
                    cursor.execute(_CONNECTIONS)
                    self.connections.append(int(cursor.fetchone()[0]))


def _connect(url: str) -> Any:
    import psycopg2

    db = psycopg2.connect(url.replace("+psycopg2", ""))
    db.autocommit = True  # pg_stat_activity is read once per transaction: each count its own
    return db


_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "AND pid <> pg_backend_pid()"
)
"""The clients connected to PostgreSQL, this one aside."""


def _wait(proc: subprocess.Popen[bytes], sampler: _Sampler, deadline: float) -> int:
    """Wait for a driver; read its CPU time as it exits, before it is reaped."""
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            sampler.read()  # a zombie's /proc stat still holds its threads' final times
            return proc.wait()
        time.sleep(0.1)
    proc.kill()
    return proc.wait()


def _drivers(case: Case, url: str, out: Path) -> tuple[list[int], float, _Sampler]:
    """Start the drivers, wait for them; their exit codes, the wall seconds, the readings."""
    cwd = shim(out / "shim")
    env = {k: v for k, v in os.environ.items() if k not in ("TRIALS", "SEARCH_STORAGE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env |= {"PYTHONUNBUFFERED": "1", "STANDIN_PLAN": "learn"}
    env["STANDIN_EPOCH_SECONDS"] = str(EPOCH_SECONDS)
    procs = []
    started = time.monotonic()
    for index in range(case.drivers):
        cmd = search_command(
            case.trials, {"EPOCHS": str(EPOCHS)},
            "--parallel", str(case.slots), "--launcher", "local", "--gpus", "none",
            "--cold-start", "--storage", url, "--study-name", STUDY,
            "--output", str(out / "study"), "--seed", str(index),
        )  # fmt: skip
        with (out / f"driver-{index}.log").open("wb") as log:
            procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=log))
    sampler = _Sampler([p.pid for p in procs], url if url.startswith("postgresql") else None)
    codes = [_wait(p, sampler, started + DEADLINE) for p in procs]
    wall = time.monotonic() - started
    sampler.stop()
    return codes, wall, sampler


def run_case(case: Case, out: Path) -> dict[str, Any]:
    """Run one row in ``out`` (emptied first); its figures."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if case.backend == "sqlite":
        import sqlite3

        url = f"sqlite:///{out / 'study.db'}"
        codes, wall, sampler = _drivers(case, url, out)
        result = measure(case, url, codes, wall, sampler)
        return {**result, "database": f"SQLite {sqlite3.sqlite_version}"}
    with Server(password=None, log_statements=True) as pg:
        codes, wall, sampler = _drivers(case, pg.url(), out)
        result = measure(case, pg.url(), codes, wall, sampler)
        statements = pg.log.read_text(errors="replace").count("LOG:  statement: ")
        result["database"] = pg.version()
    result["statements_per_finished_trial"] = round(statements / max(1, result["finished"]), 1)
    if connections := sampler.connections:
        result["connections"] = {"max": max(connections), "median": statistics.median(connections)}
    return result


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p95": float("nan")}
    p95 = float(np.percentile(values, 95, method="nearest"))
    return {"median": round(statistics.median(values), 4), "p95": round(p95, 4)}


def per_trial_cpu(samples: list[tuple[float, float]], done: list[float]) -> list[float]:
    """CPU seconds per trial over each :data:`STEP` completions in ``done`` (sorted times).

    The drivers' CPU seconds at a completion are interpolated between the two readings around it.
    """
    times, cpu = zip(*samples, strict=True)
    at = np.interp(done, times, cpu)
    return [float(at[i + STEP] - at[i]) / STEP for i in range(0, len(done) - STEP, STEP)]


def measure(
    case: Case, url: str, codes: list[int], wall: float, sampler: _Sampler
) -> dict[str, Any]:
    """The row's figures, from the study and the readings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    ended = [(t, t.datetime_start, t.datetime_complete) for t in trials]
    timed = [(t, a, b) for t, a, b in ended if a and b and t.state.name in ("COMPLETE", "PRUNED")]
    timed.sort(key=lambda row: row[2])
    finished = [t for t, _, _ in timed]
    done = [b.timestamp() for _, _, b in timed]
    first, last = done[: WINDOW + 1], done[-WINDOW - 1 :]
    cpu_first = _summary(per_trial_cpu(sampler.samples, first))
    cpu_last = _summary(per_trial_cpu(sampler.samples, last))
    seconds = [(b - a).total_seconds() for _, a, b in timed]
    driver_cpu = [sampler.last.get(pid, 0.0) for pid in sampler.pids]
    # At most one trial per slot past the budget: those already running when it was reached.
    most = case.trials + case.drivers * case.slots - 1
    return {
        **asdict(case),
        "driver_exits": codes,
        "wall_seconds": round(wall, 1),
        "finished": len(finished),
        "finished_within": [case.trials, most],
        "finished_ok": case.trials <= len(finished) <= most,
        "states": dict(Counter(t.state.name for t in trials)),
        "events_missing": [t.number for t in finished if not _events_recorded(t)],
        "cpu_first": cpu_first,
        "cpu_last": cpu_last,
        "growth": cpu_first["median"] and round(cpu_last["median"] / cpu_first["median"], 2),
        "trial_seconds_first": _summary(seconds[:WINDOW]),
        "trial_seconds_last": _summary(seconds[-WINDOW:]),
        "cpu_seconds_per_finished_trial": round(sum(driver_cpu) / max(1, len(finished)), 4),
        "cpu_share": [round(c / wall, 2) for c in driver_cpu] if wall > 0 else [],
        "trials_per_minute": round(60 * len(finished) / wall, 1),
        # The drivers' CPU per trial over each STEP trials, against the finished trials.
        "cpu_curve": [round(c, 5) for c in per_trial_cpu(sampler.samples, done)],
    }


def _events_recorded(trial: Any) -> bool:
    """Every epoch the trial ran reported to Optuna, and the run's attributes recorded."""
    epochs = int(trial.user_attrs.get("epochs", 0))
    complete = trial.state.name == "COMPLETE"
    return (
        epochs >= 1
        and sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        and (not complete or epochs == EPOCHS)
        and "launch_seconds" in trial.user_attrs
        and trial.user_attrs.get("exit_code") is not None
    )


def table(results: list[dict[str, Any]]) -> str:
    """The rows as Markdown."""
    lines = [
        "| row | finished (N..N+W-1) | driver CPU s/trial, first 100: median / p95 | last 100: "
        "median / p95 | last / first | trial wall s, last 100: median / p95 | SQL per "
        "trial | connections max (median) | driver CPU share | trials/min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        row = f"{r['backend']}, {r['trials']} trials, {r['drivers']} x {r['slots']}"
        within = f"{r['finished']} ({r['finished_within'][0]}..{r['finished_within'][1]})"
        conn = r.get("connections", {})
        conns = f"{conn['max']} ({conn['median']:g})" if conn else "n/a"
        first, last, wall = r["cpu_first"], r["cpu_last"], r["trial_seconds_last"]
        lines.append(
            f"| {row} | {within} | {first['median']:.3f} / {first['p95']:.3f} "
            f"| {last['median']:.3f} / {last['p95']:.3f} | {r['growth']}x "
            f"| {wall['median']:.2f} / {wall['p95']:.2f} "
            f"| {r.get('statements_per_finished_trial', 'n/a')} | {conns} "
            f"| {', '.join(f'{s:.2f}' for s in r['cpu_share'])} | {r['trials_per_minute']} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = command_parser("python -m bench.search_scale", __doc__)
    p.add_argument("--backends", default="postgresql,sqlite", help="rows to run, comma-separated")
    p.add_argument("--pg-trials", type=int, default=1000, help="PostgreSQL row's budget")
    p.add_argument("--drivers", type=int, default=4, help="PostgreSQL row's drivers")
    p.add_argument("--sqlite-trials", type=int, default=300, help="SQLite row's budget")
    p.add_argument("--slots", type=int, default=8, help="trials at once per driver")
    p.add_argument("--label", default="", help="a word for the rows, e.g. before or after")
    output = OUTPUT / "bench-search-scale"
    p.add_argument("--output", type=Path, default=output, help="the rows' folder (scale.json)")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the rows; print them; 0 when every study kept its budget and its events."""
    p = _parser()
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    known = {
        "postgresql": Case("postgresql", args.pg_trials, args.drivers, args.slots),
        "sqlite": Case("sqlite", args.sqlite_trials, 1, args.slots),
    }
    unknown = set(backends) - set(known)
    if unknown or not backends:
        p.error(f"--backends takes postgresql and/or sqlite, not {sorted(unknown) or 'nothing'}")
    if min(args.pg_trials, args.sqlite_trials, args.drivers, args.slots) < 1:
        p.error("--pg-trials, --sqlite-trials, --drivers and --slots must be at least 1")
    try:
        results = [run_case(known[b], args.output / b) for b in backends]
    except PostgresMissing as exc:
        print(f"search_scale: postgresql: {exc}", file=sys.stderr)
        return 2
    report = {
        "command": " ".join(["python -m bench.search_scale", *sys.argv[1:]]),
        "label": args.label,
        "machine": f"{model_name()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": results,
    }
    for path in filter(None, (args.output / "scale.json", args.json)):
        write_json(path, report)
    print(f"{report['command']} on {report['machine']}")
    print(table(results))
    ok = all(r["finished_ok"] and not r["events_missing"] for r in results)
    return 0 if ok and all(c == 0 for r in results for c in r["driver_exits"]) else 1


if __name__ == "__main__":
    sys.exit(main())
