"""The chaos soak: one study on a fresh PostgreSQL, several ``python -m search run`` drivers,
and a seeded schedule of real faults; afterwards, checks that the search lost nothing.

Each driver is the search's own command line, started from a folder where ``python -m job`` is
the stand-in job (:func:`testkit.job.shim`: the event protocol, epochs of
:data:`EPOCH_SECONDS`, no training). The schedule, drawn from the seed: SIGKILL of running trial
processes, SIGKILL of a driver (started again after a pause), a PostgreSQL restart, a trial that
hangs, a trial that exits with the memory fault (exit 5), and a trial whose output folder is
removed mid-run. Timed faults strike when the study has finished a drawn share of its trials,
so the schedule means the same on a fast and a slow machine. :func:`soak` returns every check
and each fault with what the search did about it; :func:`table` writes them as Markdown.
"""

from __future__ import annotations

import contextlib
import json
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

from testkit import REPO, alive
from testkit.job import shim
from testkit.postgres import Server

STUDY = "chaos"
EPOCHS = 4
EPOCH_SECONDS = 0.4
"""Seconds one epoch of the stand-in takes: the time a fault has to strike a run mid-way."""
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


@dataclass(frozen=True)
class Plan:
    """One soak: the study's budget, drivers and trials at once per driver, the seed, and
    how many running trials are killed (the short schedule kills one, the full one four)."""

    trials: int = 60
    drivers: int = 3
    parallel: int = 2
    seed: int = 0
    trial_kills: int = 4


@dataclass
class Fault:
    """One fault of the schedule: what, when (the study's finished trials), and the outcome."""

    kind: str
    at_finished: int = 0
    trial: int | None = None
    target: str = ""
    outcome: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def schedule(plan: Plan) -> list[Fault]:
    """The faults, drawn from the seed: the planned ones name a trial, the timed ones a
    share of the budget at which they strike."""
    rng = random.Random(plan.seed)
    numbers = rng.sample(range(2, max(4, plan.trials // 2)), 2)
    faults = [Fault("hang", trial=numbers[0]), Fault("memory exit 5", trial=numbers[1])]
    timed = ["kill trial"] * plan.trial_kills
    timed += ["kill driver", "restart PostgreSQL", "remove output folder"]
    low, high = max(1, plan.trials // 10), plan.trials * 7 // 10
    faults += [Fault(kind, at_finished=rng.randint(low, high)) for kind in timed]
    return sorted(faults, key=lambda f: (f.at_finished, f.kind))


class Soak:
    """The database, the drivers and the schedule of one soak, in ``out`` (emptied first)."""

    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan, self.out = plan, out
        shutil.rmtree(out, ignore_errors=True)
        self.ledger = out / "ledger"
        self.ledger.mkdir(parents=True)
        (out / "logs").mkdir()
        self.faults = schedule(plan)
        planned = [
            f"{f.trial}={'hang' if f.kind == 'hang' else 'memory'}"
            for f in self.faults
            if f.trial is not None
        ]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
            "STANDIN_PLAN": ",".join([*planned, "*=learn"]),
            "STANDIN_EPOCH_SECONDS": str(EPOCH_SECONDS),
            "STANDIN_LEDGER": str(self.ledger),
        }
        self.space = out / "space.json"
        max_lr = {"low": 1e-4, "high": 1.0, "log": True}
        self.space.write_text(json.dumps({"replace": True, "max_lr": max_lr}))
        self.cwd = shim(out / "shim")
        self.rng = random.Random(plan.seed + 1)
        self.pg = Server(password=None)
        self.drivers: dict[int, subprocess.Popen[bytes]] = {}
        self.driver_pids: list[int] = []
        self.exits: dict[int, list[int]] = {}
        self.starts = 0
        self._lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        """Start the drivers, strike, wait for them; the report."""
        self.pg.start()
        try:
            started = time.monotonic()
            for index in range(self.plan.drivers):
                self._start_driver(index)
            self._strike(started)
            for index, proc in list(self.drivers.items()):
                self.exits.setdefault(index, []).append(proc.wait(timeout=DEADLINE))
            return self._report(time.monotonic() - started)
        finally:
            for proc in self.drivers.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.pg.remove()

    def _start_driver(self, index: int) -> None:
        with self._lock:
            self.starts += 1
            seed = self.plan.seed * 100 + self.starts
            cmd = [sys.executable, "-m", "search", "run", "--trials", str(self.plan.trials)]
            cmd += ["--parallel", str(self.plan.parallel), "--launcher", "local"]
            cmd += ["--gpus", "none", "--cold-start", "--confirm", "0", "--study-name", STUDY]
            cmd += ["--output", str(self.out / "study"), "--space", str(self.space)]
            cmd += ["--sampler", "random", "--pruner", "none", "--seed", str(seed)]
            cmd += ["--trial-timeout", str(SILENCE), "--heartbeat", str(HEARTBEAT)]
            cmd += ["--storage-retry", "120", "--job-env", f"EPOCHS={EPOCHS}"]
            env = {**self.env, "SEARCH_STORAGE": self.pg.url()}
            with (self.out / "logs" / f"driver-{index}-{self.starts}.log").open("wb") as log:
                proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=log, stderr=log)
            self.drivers[index] = proc
            self.driver_pids.append(proc.pid)

    def _finished(self) -> int | None:
        """The study's finished trials, or None while the database cannot be asked."""
        import psycopg2

        query = "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
        try:
            with (
                contextlib.closing(psycopg2.connect(self.pg.url().replace("+psycopg2", ""))) as db,
                db.cursor() as cursor,
            ):
                cursor.execute(query)
                row = cursor.fetchone()
                return int(row[0]) if row else 0
        except psycopg2.Error:
            return None

    def _strike(self, started: float) -> None:
        pending = [f for f in self.faults if f.trial is None]
        strikes = []
        while pending and time.monotonic() - started < DEADLINE:
            if all(p.poll() is not None for p in self.drivers.values()):
                break  # the study ended before the rest of the schedule
            finished = self._finished()
            if finished is not None and finished >= pending[0].at_finished:
                fault = pending.pop(0)
                strike = getattr(self, "_" + fault.kind.replace(" ", "_").lower())
                # A fault that takes a while (a pause, a restart) must not hold up the next.
                strikes.append(threading.Thread(target=strike, args=(fault,), daemon=True))
                strikes[-1].start()
            time.sleep(0.1)
        for fault in pending:
            fault.outcome = "not struck: the study met its budget first"
        for thread in strikes:
            thread.join()

    def _pick_job(self, fault: Fault, wait: float = 10.0) -> tuple[int, str] | None:
        """A running trial's (pid, output folder) at random, none of the planned faults."""
        planned = {f.trial for f in self.faults if f.trial is not None}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            records = [json.loads(p.read_text()) for p in sorted(self.ledger.glob("*.json"))]
            jobs = [
                (r["pid"], r["folder"])
                for r in records
                if r.get("started")
                and alive(r["pid"])
                and int(Path(r["folder"]).name) not in planned
            ]
            if jobs:
                pid, folder = self.rng.choice(jobs)
                fault.trial, fault.target = int(Path(folder).name), f"pid {pid}"
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

        deadline = time.monotonic() + 60
        while True:  # the database may be in its own restart, struck at the same time
            try:
                study = optuna.load_study(study_name=STUDY, storage=self.pg.url())
                states = (optuna.trial.TrialState.RUNNING,)
                running = study.get_trials(deepcopy=False, states=states)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return [t.number for t in running if f":{pid}:" in str(t.user_attrs.get("driver", ""))]

    def _report(self, wall: float) -> dict[str, Any]:
        import optuna

        trials = optuna.load_study(study_name=STUDY, storage=self.pg.url()).get_trials()
        for fault in self.faults:
            fault.outcome = fault.outcome or outcome(fault, trials, self.out / "logs")
        return {
            "plan": asdict(self.plan),
            "wall_seconds": round(wall, 1),
            "postgresql": self.pg.version(),
            "checks": checks(self, trials),
            "faults": [asdict(f) for f in self.faults],
            "driver_exits": self.exits,
            "states": _count(t.state.name for t in trials),
        }


def _count(names: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _describe(trial: Any) -> str:
    """``trial 7 COMPLETE`` or ``trial 7 FAIL (reason)``."""
    reason = trial.user_attrs.get("fail_reason")
    return f"trial {trial.number} {trial.state.name}" + (f" ({reason[:90]})" if reason else "")


def _followed(number: int, trials: list[Any]) -> str:
    """What became of the trials queued again from trial ``number``."""
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    return "; queued again as " + ", ".join(map(_describe, retries)) if retries else ""


def outcome(fault: Fault, trials: list[Any], logs: Path) -> str:
    """What the search did about ``fault``, in words, from the study and the drivers' logs."""
    by_number = {t.number: t for t in trials}
    if fault.kind == "restart PostgreSQL":
        text = "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))
        lost, back = text.count("cannot be reached"), text.count("reachable again")
        return (
            f"down {DATABASE_DOWN:g} s; {lost} driver(s) noticed it and waited, {back} logged "
            "it back; none stopped"
        )
    if fault.kind == "kill driver":
        running = [n for n in fault.detail.get("running", []) if n in by_number]
        parts = [_describe(by_number[n]) + _followed(n, trials) for n in running]
        return f"started again after {DRIVER_PAUSE:g} s; its running trials: " + (
            "; ".join(parts) or "none"
        )
    if fault.trial is None or fault.trial not in by_number:
        return "no such trial"
    trial = by_number[fault.trial]
    attempts = trial.user_attrs.get("attempts", 1)
    text = _describe(trial) + (f" after {attempts} runs" if attempts != 1 else "")
    return text + _followed(trial.number, trials)


def _wrong_values(trials: list[Any]) -> list[int]:
    """COMPLETE trials whose value is not the val_acc their job wrote."""
    wrong = []
    for t in trials:
        if t.state.name == "COMPLETE":
            result = Path(t.user_attrs.get("output_dir", "")) / "result.json"
            written = json.loads(result.read_text())["val_acc"] if result.is_file() else None
            if written is None or abs(written - t.value) > 1e-9:
                wrong.append(t.number)
    return wrong


def checks(soak: Soak, trials: list[Any]) -> list[dict[str, Any]]:
    """Each check: its name, whether it passed, and the detail."""
    n, workers = soak.plan.trials, soak.plan.drivers * soak.plan.parallel
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    left = [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    wrong = _wrong_values(trials)
    records = [json.loads(p.read_text()) for p in soak.ledger.glob("*.json")]
    shared = sorted({r["folder"] for r in records if r.get("shared")})
    folders = [t.user_attrs.get("output_dir") for t in trials if t.user_attrs.get("output_dir")]
    duplicated = sorted({f for f in folders if folders.count(f) > 1})
    left_behind = sorted({r["pid"] for r in records if alive(r["pid"])})
    left_behind += [pid for pid in soak.driver_pids if alive(pid)]
    complete = sum(t.state.name == "COMPLETE" for t in trials)
    struck = all(
        f.outcome and not f.outcome.startswith(("not struck", "no such")) for f in soak.faults
    )
    rows = [
        (f"finished trials within {n}..{n + workers - 1}", n <= finished < n + workers,
         f"{finished} finished"),
        ("no trial left RUNNING or WAITING", not left, f"left: {left}" if left else ""),
        ("every COMPLETE trial's value is the val_acc its job wrote", not wrong,
         f"differ: {wrong}" if wrong else f"{complete} compared"),
        ("no two runs shared an output folder", not shared and not duplicated,
         f"shared at once: {shared}; one folder, two trials: {duplicated}"
         if shared or duplicated else f"{len(records)} runs"),
        ("no process left behind", not left_behind, f"alive: {left_behind}" if left_behind else ""),
        ("every driver ended with exit 0", all(c[-1] == 0 for c in soak.exits.values()),
         f"exits {soak.exits}"),
        ("every fault struck and its outcome is named", struck, ""),
    ]  # fmt: skip
    return [{"check": name, "passed": bool(ok), "detail": detail} for name, ok, detail in rows]


def table(result: dict[str, Any]) -> str:
    """The checks and the faults as Markdown tables."""
    lines = ["| check | result | detail |", "|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |")
    lines += ["", "| fault | when (finished trials) | target | what the search did |"]
    lines.append("|---|---|---|---|")
    for f in result["faults"]:
        when = "planned" if f["kind"] in ("hang", "memory exit 5") else str(f["at_finished"])
        target = f["target"] or (f"trial {f['trial']}" if f["trial"] is not None else "")
        if f["kind"] in ("kill trial", "remove output folder") and f["trial"] is not None:
            target = f"trial {f['trial']}, {f['target']}"
        lines.append(f"| {f['kind']} | {when} | {target} | {f['outcome']} |")
    return "\n".join(lines)


def soak(plan: Plan, out: Path) -> dict[str, Any]:
    """Run one soak in ``out``; its report, also written to ``out/chaos.json`` and the tables
    to ``out/chaos.md``."""
    result = Soak(plan, out).run()
    (out / "chaos.json").write_text(json.dumps(result, indent=2))
    head = (
        f"{plan.trials} trials, {plan.drivers} drivers x {plan.parallel}, seed {plan.seed}, "
        f"{plan.trial_kills} trial kill(s), {result['postgresql']}, {result['wall_seconds']} s"
    )
    (out / "chaos.md").write_text(f"{head}\n\n{table(result)}\n")
    return result
