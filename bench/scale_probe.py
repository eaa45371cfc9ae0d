"""No figure: the scale bench's driver (``bench/search_scale.py``): ``python -m search run``
itself, with measuring hooks around it.

``python -m bench.scale_probe run ARGS…`` installs the hooks, then runs the search's command
line exactly as ``python -m search run ARGS…`` would (``runpy``, as ``-m`` does). The local
launcher starts ``bench/scale_job.py`` instead of ``python -m job``; nothing else of the
search changes. ``SCALE_PROBE`` names the JSON-lines file the hooks write: one line per trial
this driver ran, and one ``process`` line at exit. It is removed from the environment before
any trial starts, so the trials run unmeasured.

A trial's line holds, for the worker thread that took and ran it:

- ``cpu``: the thread's CPU seconds from taking the trial to telling its result (sampling,
  the storage's client side, launching, recording each event, reaping): the driver's cost
  of the trial, which adds up over its threads to the process's CPU time;
- ``own``: wall seconds of the driver's own work for the trial: taking it (reaping, counting,
  ``study.ask`` and the sampler), launching it, recording each event, telling the result.
  Time blocked on the job (waiting for its next line or its exit), waiting for the budget
  and waiting for the driver's lock held by another worker are left out (``blocked`` and
  ``lock``); waiting for the interpreter lock and the cores held by the other workers is
  not, so on a busy machine ``own`` exceeds ``cpu``;
- ``sampler`` and ``sampler_cpu``: wall and CPU seconds inside the sampler (search space,
  relative and independent sampling, with the storage reads they make);
- ``queries`` and ``sql``: SQL statements the thread sent (SQLAlchemy's
  ``before_cursor_execute``) and seconds until they returned;
- ``t_take`` and ``t_done``: when the worker started taking the trial and when it was told
  (``time.time()``).

The ``process`` line adds every thread's statements (heartbeats, the driver's first reap),
the process's CPU seconds (``/proc/self/stat`` utime + stime) and its wall seconds.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import runpy
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JOB = Path(__file__).with_name("scale_job.py")
ENV = "SCALE_PROBE"
"""The variable naming the probe's output file (set by the bench for its drivers only)."""

_TICKS = os.sysconf("SC_CLK_TCK")


class _Probe:
    """Per-thread counters and the output file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()
        self.write_lock = threading.Lock()
        self.queries = 0
        self.sql = 0.0
        self.started = time.monotonic()
        self.file = path.open("a")

    def counters(self) -> dict[str, float]:
        found: dict[str, float] | None = getattr(self.local, "counters", None)
        if found is None:
            found = {"blocked": 0.0, "lock": 0.0, "sampler": 0.0, "sampler_cpu": 0.0}
            found |= {"queries": 0, "sql": 0.0}
            self.local.counters = found
        return found

    def write(self, record: dict[str, Any]) -> None:
        with self.write_lock:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()


def _cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _add(probe: _Probe, key: str, since: float) -> None:
    probe.counters()[key] += time.perf_counter() - since


class _TimedLock:
    """The driver's lock; the time spent waiting for it counts as ``lock``."""

    def __init__(self, probe: _Probe, lock: Any) -> None:
        self._probe, self._inner = probe, lock

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        start = time.perf_counter()
        got: bool = self._inner.acquire(*args, **kwargs)
        _add(self._probe, "lock", start)
        return got

    def release(self) -> None:
        self._inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def _install(probe: _Probe) -> None:
    import optuna
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import search.driver as driver_module
    import search.events as events_module
    import search.launchers.local as local_module

    def before(conn: Any, *_: Any) -> None:
        conn.info.setdefault("probe_started", []).append(time.perf_counter())

    def after(conn: Any, *_: Any) -> None:
        spent = time.perf_counter() - conn.info["probe_started"].pop()
        counters = probe.counters()
        counters["queries"] += 1
        counters["sql"] += spent
        with probe.write_lock:
            probe.queries += 1
            probe.sql += spent

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)

    # The launcher starts the scale job instead of `python -m job`.
    launcher_init = local_module.LocalLauncher.__init__

    @functools.wraps(launcher_init)
    def init_launcher(self: Any, command: Any = None, *args: Any, **kwargs: Any) -> None:
        launcher_init(self, command or [sys.executable, str(JOB)], *args, **kwargs)

    local_module.LocalLauncher.__init__ = init_launcher  # type: ignore[method-assign]

    # Blocked on the job: the next line of its stdout, and its exit.
    iterate = events_module.EventStream.__iter__

    def timed_iter(self: Any) -> Iterator[dict[str, Any]]:
        events = iterate(self)
        while True:
            start = time.perf_counter()
            try:
                item = next(events)
            except StopIteration:
                _add(probe, "blocked", start)
                return
            _add(probe, "blocked", start)
            yield item

    events_module.EventStream.__iter__ = timed_iter  # type: ignore[method-assign]
    _blocking(probe, local_module.LocalRun, "wait")

    # Waiting for the budget (the driver's stop event) and for the driver's lock.
    driver_init = driver_module.Driver.__init__

    @functools.wraps(driver_init)
    def init_driver(self: Any, *args: Any, **kwargs: Any) -> None:
        driver_init(self, *args, **kwargs)
        self._lock = _TimedLock(probe, self._lock)
        self._stopping.__class__ = _timed_event(probe)

    driver_module.Driver.__init__ = init_driver  # type: ignore[method-assign]

    # Per trial: taking it, then running it.
    take = driver_module.Driver._next_trial

    @functools.wraps(take)
    def timed_take(self: Any) -> Any:
        counters = probe.counters()
        before_take = dict(counters)
        probe.local.take_started = (
            time.perf_counter(),
            time.thread_time(),
            time.time(),
            before_take,
        )
        return take(self)

    driver_module.Driver._next_trial = timed_take  # type: ignore[method-assign]
    run = driver_module.Driver._run

    @functools.wraps(run)
    def timed_run(self: Any, trial: Any, *args: Any, **kwargs: Any) -> Any:
        started, cpu_started, wall_started, before_take = probe.local.take_started
        try:
            return run(self, trial, *args, **kwargs)
        finally:
            counters = probe.counters()
            spent = {k: counters[k] - before_take[k] for k in counters}
            wall = time.perf_counter() - started
            probe.write(
                {
                    "kind": "trial",
                    "number": trial.number,
                    "study": trial.study.study_name,
                    "t_take": wall_started,
                    "t_done": time.time(),
                    "wall": wall,
                    "own": wall - spent["blocked"] - spent["lock"],
                    "cpu": time.thread_time() - cpu_started,
                    **spent,
                }
            )

    driver_module.Driver._run = timed_run  # type: ignore[method-assign]

    # The sampler's own time (a sampler calling another, as TPE calls its random sampler
    # for the first trials, is counted once).
    for cls in (optuna.samplers.TPESampler, optuna.samplers.RandomSampler):
        for name in ("infer_relative_search_space", "sample_relative", "sample_independent"):
            _sampling(probe, cls, name)

    def at_exit() -> None:
        probe.write(
            {
                "kind": "process",
                "pid": os.getpid(),
                "queries": probe.queries,
                "sql": probe.sql,
                "cpu": _cpu_seconds(),
                "wall": time.monotonic() - probe.started,
            }
        )
        probe.file.close()

    atexit.register(at_exit)


def _blocking(probe: _Probe, cls: type, name: str) -> None:
    method = getattr(cls, name)

    @functools.wraps(method)
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            _add(probe, "blocked", start)

    setattr(cls, name, timed)


def _sampling(probe: _Probe, cls: type, name: str) -> None:
    method = cls.__dict__.get(name)
    if method is None:
        return

    @functools.wraps(method)
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(probe.local, "sampling", 0)
        probe.local.sampling = depth + 1
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            probe.local.sampling = depth
            if depth == 0:
                _add(probe, "sampler", start)
                probe.counters()["sampler_cpu"] += time.thread_time() - cpu

    setattr(cls, name, timed)


def _timed_event(probe: _Probe) -> type:
    class TimedEvent(threading.Event):
        """The driver's stop event; a worker's wait on it is waiting for the budget."""

        def wait(self, timeout: float | None = None) -> bool:
            start = time.perf_counter()
            try:
                return super().wait(timeout)
            finally:
                _add(probe, "blocked", start)

    return TimedEvent


def main() -> None:
    path = os.environ.pop(ENV, "")
    if path:
        _install(_Probe(Path(path)))
    runpy.run_module("search", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
