"""The chaos soak's table (docs/benchmarks.md): a study on a fresh PostgreSQL, several
drivers, and a seeded schedule of real faults; afterwards, checks that the search lost nothing.

    python -m bench.search_chaos                      # 60 trials, 3 drivers, the full schedule
    python -m bench.search_chaos --schedule short --trials 12     # the CI test's schedule

The drivers are the search's own (:class:`search.driver.Driver`, local launcher), each a
process of its own; their job is ``bench/chaos_job.py`` (the event protocol, a few epochs of
:data:`bench.chaos_job.EPOCH_SECONDS`, no training). The schedule, drawn from ``--seed``:
SIGKILL of random trial processes, SIGKILL of a driver (started again after a pause), a
PostgreSQL restart, a trial that hangs, a trial that exits with the memory fault (exit 5),
and a trial whose output folder is removed mid-run. Timed faults strike when the study has
finished a drawn share of its trials, so the schedule means the same on a fast and a slow
machine.

Afterwards it prints each check and a table of each fault and what the search did, writes
both to ``<output>/chaos.json`` and exits 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.paths import OUTPUT, REPO
from bench.postgres import Postgres

JOB = REPO / "bench" / "chaos_job.py"
STUDY = "chaos"
EPOCHS = 4
HEARTBEAT = 1
"""Seconds between the drivers' heartbeats (a driver silent for 3 of them is stale)."""
SILENCE = 6.0
"""Seconds without an event after which a driver ends a run (the hanging trial)."""
DRIVER_PAUSE = 3.0
"""Seconds between killing a driver and starting it again."""
DATABASE_DOWN = 3.0
"""Seconds PostgreSQL stays down in its restart."""
DEADLINE = 900.0
"""Seconds the whole soak may take before it counts as hung."""


@dataclass
class Fault:
    """One fault of the schedule: what, when (the study's finished trials), and the outcome."""

    kind: str
    at_finished: int = 0
    trial: int | None = None
    target: str = ""
    outcome: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def schedule(trials: int, short: bool, seed: int) -> list[Fault]:
    """The faults, drawn from ``seed``: the plan-borne ones name a trial, the timed ones a
    share of the budget at which they strike."""
    rng = random.Random(seed)
    numbers = rng.sample(range(2, max(4, trials // 2)), 2)
    faults = [Fault("hang", trial=numbers[0]), Fault("memory exit 5", trial=numbers[1])]
    timed = ["kill trial"] * (1 if short else 4) + [
        "kill driver",
        "restart PostgreSQL",
        "remove output folder",
    ]
    for kind in timed:
        faults.append(Fault(kind, at_finished=rng.randint(max(1, trials // 10), trials * 7 // 10)))
    return sorted(faults, key=lambda f: (f.at_finished, f.kind))


# -- one driver (the soak starts each as `python -m bench.search_chaos --drive CONFIG`) -----


def drive(config: dict[str, Any]) -> int:
    """Run one driver of the soak to the study's budget; its exit code."""
    from search.driver import Driver
    from search.errors import StudyStopped
    from search.launchers.local import LocalLauncher
    from search.settings import Settings
    from search.space import build_space

    settings = Settings(
        trials=config["trials"],
        output=Path(config["output"]),
        storage=config["url"],
        study_name=STUDY,
        space=build_space({"max_lr": {"low": 1e-4, "high": 1.0, "log": True}}),
        launcher=LocalLauncher([sys.executable, str(JOB)], slots=config["parallel"]),
        parallel=config["parallel"],
        job_env={
            "EPOCHS": str(EPOCHS),
            "CHAOS_PLAN": config["plan"],
            "CHAOS_LEDGER": config["ledger"],
        },
        data_dir=Path(config["output"]) / "data",
        sampler="random",
        pruner="none",
        seed=config["seed"],
        trial_timeout=SILENCE,
        heartbeat=HEARTBEAT,
        stop_grace=2.0,
        storage_retry=120.0,
        max_failures=50,
    )
    driver = Driver(settings)
    signal.signal(signal.SIGTERM, lambda *_: driver.stop())
    try:
        driver.run()
    except StudyStopped as exc:
        print(f"chaos driver: {exc}", file=sys.stderr)
        return exc.code
    return 0


# -- the soak ---------------------------------------------------------------------------


class Soak:
    """The database, the drivers and the schedule of one soak."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.output
        shutil.rmtree(self.out, ignore_errors=True)
        self.ledger = self.out / "ledger"
        self.ledger.mkdir(parents=True)
        (self.out / "logs").mkdir()
        self.faults = schedule(args.trials, args.schedule == "short", args.seed)
        self.plan = ",".join(
            f"{f.trial}={'hang' if f.kind == 'hang' else 'memory'}"
            for f in self.faults
            if f.trial is not None
        )
        self.rng = random.Random(args.seed + 1)
        # The soak's own reads ride out the restart it causes: their notices are not news.
        logging.getLogger("search").setLevel(logging.ERROR)
        self.pg = Postgres()
        self.drivers: dict[int, subprocess.Popen[bytes]] = {}
        self.driver_pids: list[int] = []
        self.exits: dict[int, list[int]] = {}
        self.starts = 0
        self._strikes: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        self.pg.start()
        try:
            started = time.monotonic()
            for index in range(self.args.drivers):
                self._start_driver(index)
            self._strike(started)
            for index, proc in list(self.drivers.items()):
                self.exits.setdefault(index, []).append(proc.wait(timeout=DEADLINE))
            wall = time.monotonic() - started
            return self._report(wall)
        finally:
            for proc in self.drivers.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.pg.remove()

    # -- the drivers

    def _start_driver(self, index: int) -> None:
        with self._lock:
            self._start_driver_locked(index)

    def _start_driver_locked(self, index: int) -> None:
        config = {
            "trials": self.args.trials,
            "output": str(self.out / "study"),
            "url": self.pg.url,
            "parallel": self.args.parallel,
            "plan": self.plan,
            "ledger": str(self.ledger),
            "seed": self.args.seed * 100 + self.starts,
        }
        self.starts += 1
        log = (self.out / "logs" / f"driver-{index}-{self.starts}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.search_chaos", "--drive", json.dumps(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.drivers[index] = proc
        self.driver_pids.append(proc.pid)

    # -- the schedule

    def _finished(self) -> int | None:
        """The study's finished trials, or None while the database cannot be asked."""
        import psycopg2

        url = self.pg.url.replace("+psycopg2", "")
        query = "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
        try:
            with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
                cursor.execute(query)
                row = cursor.fetchone()
                return int(row[0]) if row else 0
        except psycopg2.Error:
            return None

    def _strike(self, started: float) -> None:
        pending = [f for f in self.faults if f.trial is None]
        while pending and time.monotonic() - started < DEADLINE:
            if all(p.poll() is not None for p in self.drivers.values()):
                break  # the study ended before the rest of the schedule
            finished = self._finished()
            if finished is not None and finished >= pending[0].at_finished:
                fault = pending.pop(0)
                strike = getattr(self, "_" + fault.kind.replace(" ", "_").lower())
                # A fault that takes a while (a pause, a restart) must not hold up the next.
                thread = threading.Thread(target=strike, args=(fault,), daemon=True)
                thread.start()
                self._strikes.append(thread)
            time.sleep(0.1)
        for fault in pending:
            fault.outcome = "not struck: the study met its budget first"
        for thread in self._strikes:
            thread.join()

    def _running_jobs(self) -> list[tuple[int, str]]:
        """(pid, output folder) of the job runs alive now."""
        alive = []
        for path in sorted(self.ledger.glob("*.json")):
            record = json.loads(path.read_text())
            if record.get("started") and _alive(record["pid"]):
                alive.append((record["pid"], record["folder"]))
        return alive

    def _pick_job(self, fault: Fault, wait: float = 10.0) -> tuple[int, str] | None:
        plan = {f.trial for f in self.faults if f.trial is not None}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            jobs = [j for j in self._running_jobs() if int(Path(j[1]).name) not in plan]
            if jobs:
                pid, folder = self.rng.choice(jobs)
                fault.trial = int(Path(folder).name)
                fault.target = f"pid {pid}"
                return pid, folder
            time.sleep(0.05)
        fault.outcome = "not struck: no trial was running"
        return None

    def _kill_trial(self, fault: Fault) -> None:
        picked = self._pick_job(fault)
        if picked is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(picked[0], signal.SIGKILL)

    def _remove_output_folder(self, fault: Fault) -> None:
        picked = self._pick_job(fault)
        if picked is not None:
            shutil.rmtree(picked[1], ignore_errors=True)
            fault.target = picked[1]

    def _kill_driver(self, fault: Fault) -> None:
        index = self.rng.randrange(len(self.drivers))
        proc = self.drivers[index]
        fault.target = f"driver {index} (pid {proc.pid})"
        fault.detail["running"] = self._running_of(proc.pid)
        proc.kill()
        self.exits.setdefault(index, []).append(proc.wait())
        time.sleep(DRIVER_PAUSE)
        self._start_driver(index)

    def _restart_postgresql(self, fault: Fault) -> None:
        fault.target = f"PostgreSQL at 127.0.0.1:{self.pg.port}"
        self.pg.stop()
        time.sleep(DATABASE_DOWN)
        self.pg.start()

    def _running_of(self, pid: int) -> list[int]:
        """The numbers of the RUNNING trials that the driver with ``pid`` owns."""
        import optuna

        from search.study import load_study

        study = load_study(self.pg.url, STUDY)
        return [
            t.number
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if f":{pid}:" in str(t.user_attrs.get("driver", ""))
        ]

    # -- afterwards

    def _report(self, wall: float) -> dict[str, Any]:
        from search.study import load_study

        self.pg_version = self.pg.version()
        study = load_study(self.pg.url, STUDY)
        trials = study.get_trials(deepcopy=False)
        for fault in self.faults:
            if not fault.outcome:
                fault.outcome = _outcome(fault, trials, self.out / "logs")
        checks = _checks(self, trials)
        return {
            "command": " ".join(["python -m bench.search_chaos", *sys.argv[1:]]),
            "trials": self.args.trials,
            "drivers": self.args.drivers,
            "parallel": self.args.parallel,
            "seed": self.args.seed,
            "schedule": self.args.schedule,
            "wall_seconds": round(wall, 1),
            "postgresql": self.pg_version,
            "checks": checks,
            "faults": [asdict(f) for f in self.faults],
            "driver_exits": self.exits,
            "states": _count(t.state.name for t in trials),
        }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _count(names: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _describe(trial: Any) -> str:
    """``trial 7 COMPLETE`` or ``trial 7 FAIL (reason)``, with its retry."""
    text = f"trial {trial.number} {trial.state.name}"
    reason = trial.user_attrs.get("fail_reason")
    if reason:
        text += f" ({reason[:90]})"
    return text


def _followed(number: int, trials: list[Any]) -> str:
    """What became of the trials queued again from trial ``number``."""
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    if not retries:
        return ""
    return "; queued again as " + ", ".join(_describe(t) for t in retries)


def _outcome(fault: Fault, trials: list[Any], logs: Path) -> str:
    by_number = {t.number: t for t in trials}
    if fault.kind == "restart PostgreSQL":
        text = "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))
        lost = text.count("cannot be reached")
        back = text.count("reachable again")
        return (
            f"down {DATABASE_DOWN:g} s; {lost} driver(s) noticed it and waited, {back} logged "
            "it back; none stopped"
        )
    if fault.kind == "kill driver":
        running = fault.detail.get("running", [])
        parts = [_describe(by_number[n]) + _followed(n, trials) for n in running if n in by_number]
        return f"started again after {DRIVER_PAUSE:g} s; its running trials: " + (
            "; ".join(parts) if parts else "none"
        )
    if fault.trial is None or fault.trial not in by_number:
        return "no such trial"
    trial = by_number[fault.trial]
    attempts = trial.user_attrs.get("attempts", 1)
    text = _describe(trial) + (f" after {attempts} runs" if attempts != 1 else "")
    return text + _followed(trial.number, trials)


def _checks(soak: Soak, trials: list[Any]) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    n, workers = soak.args.trials, soak.args.drivers * soak.args.parallel
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    wrong = []
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        result = Path(t.user_attrs.get("output_dir", "")) / "result.json"
        written = json.loads(result.read_text())["val_acc"] if result.is_file() else None
        if written is None or abs(written - t.value) > 1e-9:
            wrong.append(t.number)
    records = [json.loads(p.read_text()) for p in soak.ledger.glob("*.json")]
    shared = sorted({r["folder"] for r in records if r.get("shared")})
    folders = [t.user_attrs.get("output_dir") for t in trials if t.user_attrs.get("output_dir")]
    duplicated = sorted({f for f in folders if folders.count(f) > 1})
    left_behind = sorted({r["pid"] for r in records if _alive(r["pid"])})
    left_behind += [pid for pid in soak.driver_pids if _alive(pid)]
    exits = [codes[-1] for codes in soak.exits.values()]
    return [
        _check(
            f"finished trials within {n}..{n + workers - 1}",
            n <= finished < n + workers,
            f"{finished} finished",
        ),
        _check("no trial left RUNNING or WAITING", not left, f"left: {left}" if left else ""),
        _check(
            "every COMPLETE trial's value is the val_acc its job wrote",
            not wrong,
            f"differ: {wrong}"
            if wrong
            else f"{sum(t.state == TrialState.COMPLETE for t in trials)} compared",
        ),
        _check(
            "no two runs shared an output folder",
            not shared and not duplicated,
            f"shared at once: {shared}; one folder, two trials: {duplicated}"
            if shared or duplicated
            else f"{len(records)} runs",
        ),
        _check(
            "no process left behind",
            not left_behind,
            f"alive: {left_behind}" if left_behind else "",
        ),
        _check(
            "every driver ended with exit 0",
            all(code == 0 for code in exits),
            f"exits {soak.exits}",
        ),
        _check(
            "every fault struck and its outcome is named",
            all(
                f.outcome and not f.outcome.startswith(("not struck", "no such"))
                for f in soak.faults
            ),
            "",
        ),
    ]


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "passed": bool(passed), "detail": detail}


def table(result: dict[str, Any]) -> str:
    """The checks and the faults as Markdown tables."""
    lines = ["| check | result | detail |", "|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |")
    lines += [
        "",
        "| fault | when (finished trials) | target | what the search did |",
        "|---|---|---|---|",
    ]
    for f in result["faults"]:
        when = "planned" if f["kind"] in ("hang", "memory exit 5") else str(f["at_finished"])
        target = f["target"] or (f"trial {f['trial']}" if f["trial"] is not None else "")
        if f["kind"] in ("kill trial", "remove output folder") and f["trial"] is not None:
            target = f"trial {f['trial']}, {f['target']}"
        lines.append(f"| {f['kind']} | {when} | {target} | {f['outcome']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=60, help="the study's budget (default 60)")
    p.add_argument("--drivers", type=int, default=3, help="drivers at once (default 3)")
    p.add_argument("--parallel", type=int, default=2, help="trials at once per driver")
    p.add_argument("--seed", type=int, default=0, help="draws the schedule (default 0)")
    p.add_argument(
        "--schedule",
        choices=["full", "short"],
        default="full",
        help="full: four trial kills; short (CI): one",
    )
    p.add_argument("--output", type=Path, default=OUTPUT / "search-chaos")
    p.add_argument("--drive", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.drive:
        return drive(json.loads(args.drive))
    if args.trials < 10:
        p.error("--trials must be at least 10: the schedule strikes between 10% and 70% of it")
    from bench.postgres import PostgresMissing

    try:
        soak = Soak(args)
    except PostgresMissing as exc:
        print(f"search_chaos: {exc}", file=sys.stderr)
        return 2
    result = soak.run()
    (args.output / "chaos.json").write_text(json.dumps(result, indent=2))
    print(
        f"{result['command']}: {result['trials']} trials, {result['drivers']} drivers x "
        f"{result['parallel']}, seed {result['seed']}, {result['postgresql']}, "
        f"{result['wall_seconds']} s"
    )
    print(table(result))
    return 0 if all(c["passed"] for c in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
