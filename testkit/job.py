"""The stand-in job: speaks the job's event protocol (:mod:`job.contract`), trains nothing.

Start it as ``python -m testkit.job [PLAN]``, as ``python testkit/job.py [PLAN]`` (:data:`PATH`),
or as ``python -m job`` itself from the folder :func:`shim` prepares (a search started through
its command line runs it so). It reads the job's ``OUTPUT_DIR``, ``EPOCHS`` (default 2) and
the tuned ``MAX_LR``, ``WEIGHT_DECAY``, ``GRAD_CLIP``, ``BATCH_SIZE``, ``SEED``, and:

- the plan, the ``PLAN`` argument or else ``STANDIN_PLAN``: ``N=WHAT`` items, comma-separated,
  where N is a trial's number (the last part of ``OUTPUT_DIR``); ``*=WHAT``, or a bare
  ``WHAT``, for every other run; ``done`` when nothing matches;
- ``STANDIN_EPOCH_SECONDS`` (default 0): the seconds each epoch takes;
- ``STANDIN_LEDGER``: a folder where each run leaves a JSON record (its pid, its folder). With
  it a run holds an exclusive lock on ``OUTPUT_DIR/.run.lock``; a second run in the same folder
  at once records ``shared`` and exits 1;
- ``STANDIN_SCORES`` and ``STANDIN_CONFIRM_SECONDS`` (``scored``), ``STANDIN_EXIT`` and
  ``STANDIN_HOLD`` (``report``);
- ``STANDIN_DATA_SHA256`` and ``STANDIN_CODE_SHA256``: the ``done`` event's ``data_sha256``
  (default 64 zeros: the stand-in reads no data) and ``code_sha256`` (default the job's own
  digest, :func:`job.code.code_sha256`).

What a run does (WHAT):

- ``done``: EPOCHS epochs, val_acc 0.5 + 0.1 × epoch, then ``done``;
- ``learn``: the same with a val_acc that peaks at the tutorial's recipe (MAX_LR 0.01,
  WEIGHT_DECAY 1e-4, GRAD_CLIP 0.1, BATCH_SIZE 400) and grows with the epochs, so a sampler
  has something to learn and a pruner something to prune;
- ``low``: val_acc 0.2 + 0.01 × epoch, :data:`LOW_EPOCH_SECONDS` between epochs (a trial a
  pruner dislikes, with the time a real run has between epochs);
- ``exitN`` or ``exitN-REASON``: one epoch, then exit N with a sentence on stderr and an
  ``error`` event (``reason`` REASON when given); ``memory`` is ``exit5-memory``;
- ``preempt``: exit 143 on the first run, ``done`` when rerun in the same ``OUTPUT_DIR``;
- ``silent`` (or ``hang``): the ``start`` event, then nothing;
- ``slow``: one epoch of :data:`SLOW_EPOCH_SECONDS` with a ``progress`` event every
  :data:`PROGRESS_EVERY` seconds, then ``done``;
- ``scored``: EPOCHS epochs whose val_acc is the score ``STANDIN_SCORES`` gives this run's
  MAX_LR and SEED (``LR@SEED:VALUE`` items, space-separated, LR written as ``%g``; 0.3 when
  absent); a confirmation run (``OUTPUT_DIR`` under ``confirm/``) waits
  ``STANDIN_CONFIRM_SECONDS`` before its last epoch;
- ``gatherN``: wait until N runs of the study run at once (markers in
  ``<study output>/gather/``), then ``done``; exit 9 when that never happens;
- ``report``: one JSON line saying how it was started (environment, process group, session,
  CPUs, argv, ``sys.path[0]``, working folder, open descriptors, signal dispositions, stdin,
  ``__name__``), "working" on stderr, ``STANDIN_HOLD`` seconds, then exit ``STANDIN_EXIT``;
- ``hold``: a grandchild whose pid goes to ``OUTPUT_DIR/child.pid``, a ``start`` event, then
  sleep until stopped; ``kill``: SIGKILL itself.

Apart from ``report``, ``hold`` and ``kill``, a run writes its environment to
``OUTPUT_DIR/env.json`` and its pid to ``OUTPUT_DIR/pid``, and a finished one its val_acc to
``OUTPUT_DIR/result.json``; SIGTERM ends it with the job's exit 143, and an ``OUTPUT_DIR`` that
disappears mid-run with exit 1.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # run by path: sys.path[0] is this folder, where job.py is not the job
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from job.code import code_sha256
from job.contract import EVENT_VERSION, EVENTS, ExitCode

PATH = Path(__file__).resolve()
"""This file, for a command that starts the stand-in by path."""
LOW_EPOCH_SECONDS = 1.5
"""Seconds a ``low`` run spends between two epochs."""
SLOW_EPOCH_SECONDS = 3.0
PROGRESS_EVERY = 0.25
"""A ``slow`` run's epoch and the seconds between its progress events."""
GATHER_LIMIT = 120.0
"""Seconds a ``gatherN`` run waits for the others before it gives up (a failure, not a hang)."""
_HELD: list[Any] = []


def emit(event: str, **fields: Any) -> None:
    """One event line with the contract's version; a field the contract lacks is refused."""
    unknown = set(fields) - set(EVENTS[event].__annotations__)
    if unknown:
        raise ValueError(f"the contract's {event!r} event has no field {sorted(unknown)}")
    print(json.dumps({"v": EVENT_VERSION, "event": event, **fields}), flush=True)


def parse_plan(text: str) -> dict[str, str]:
    """``0=exit4,*=done`` or ``report`` as trial number (``*``: any other) → behaviour."""
    plan = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        number, sep, what = item.rpartition("=")
        plan[number if sep else "*"] = what
    return plan


def learned_val_acc(epoch: int, epochs: int) -> float:
    """``learn``'s val_acc: peaks at the tutorial's recipe, grows with the epochs."""
    distance = (
        abs(math.log10(_number("MAX_LR", 0.01)) + 2)
        + 0.3 * abs(math.log10(_number("WEIGHT_DECAY", 1e-4)) + 4)
        + 0.2 * abs(math.log10(_number("GRAD_CLIP", 0.1)) + 1)
        + 0.1 * abs(_number("BATCH_SIZE", 400) - 400) / 400
    )
    return round(0.92 - 0.05 * distance - 0.2 * (epochs - epoch) / epochs, 6)


def _number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _device() -> str:
    """The device a run given DEVICE resolves, as the job names it (``auto``: the CPU)."""
    device = os.environ.get("DEVICE", "auto").strip().lower()
    return "cpu" if device == "auto" else device


def _start_event() -> None:
    emit(
        "start", config={"EPOCHS": _epochs()}, device=_device(), precision="fp32",
        precision_reason="PRECISION=fp32 set", cpu_threads=1,
        pid=os.getpid(),
    )  # fmt: skip


def _epoch_event(epoch: int, epochs: int, val_acc: float, seconds: float = 0.0) -> None:
    emit(
        "epoch", epoch=epoch, epochs=epochs, train_loss=1.0 / epoch, val_loss=1.0 / epoch,
        val_acc=val_acc, lr=0.01, seconds=seconds, images_per_sec=0.0,
    )  # fmt: skip


def _epochs() -> int:
    return int(os.environ.get("EPOCHS") or 2)


def _gone(out: Path) -> int:
    print(f"error: the output folder {out} disappeared; nothing to do.", file=sys.stderr)
    return int(ExitCode.UNEXPECTED)


def _done(out: Path, val_acc: float, epochs: int, started: float) -> int:
    try:
        (out / "result.json").write_text(json.dumps({"val_acc": val_acc}))
    except OSError:
        return _gone(out)
    emit(
        "done", val_acc=val_acc, best_val_acc=val_acc, epochs=epochs,
        train_seconds=round(time.monotonic() - started, 3), images_per_sec=0.0,
        output_dir=str(out), data_sha256=os.environ.get("STANDIN_DATA_SHA256", "0" * 64),
        code_sha256=os.environ.get("STANDIN_CODE_SHA256") or code_sha256(),
    )  # fmt: skip
    return 0


def _fail(what: str) -> int:
    number, _, reason = ("exit5-memory" if what == "memory" else what)[len("exit") :].partition("-")
    code = int(number)
    print(f"error: stub failure with exit {code}; nothing to do.", file=sys.stderr)
    emit(
        "error", code=code, message=f"stub failure {code}", **({"reason": reason} if reason else {})
    )
    return code


def _train(out: Path, what: str, started: float) -> int:
    """The epochs of ``done``, ``learn``, ``low``, ``exitN``, ``memory`` and ``preempt``."""
    epochs = _epochs()
    seconds = _number("STANDIN_EPOCH_SECONDS", 0.0)
    base, step = (0.2, 0.01) if what == "low" else (0.5, 0.1)
    runs = out / "runs"
    first_run = not runs.exists()
    runs.write_text("x")
    value = 0.0
    for epoch in range(1, epochs + 1):
        time.sleep(seconds)
        if not out.is_dir():
            return _gone(out)
        value = learned_val_acc(epoch, epochs) if what == "learn" else base + step * epoch
        _epoch_event(epoch, epochs, value, seconds)
        if what.startswith("exit") or what == "memory":
            return _fail(what)
        if what == "preempt" and first_run:
            print("Stopped by SIGTERM; rerun to resume.", file=sys.stderr)
            return int(ExitCode.STOPPED)
        if what == "low" and epoch < epochs:
            time.sleep(LOW_EPOCH_SECONDS)
    return _done(out, value, epochs, started)


def _slow(out: Path, started: float) -> int:
    steps = round(SLOW_EPOCH_SECONDS / PROGRESS_EVERY)
    for step in range(1, steps + 1):
        time.sleep(PROGRESS_EVERY)
        emit(
            "progress", epoch=1, epochs=1, step=step, steps=steps, images_per_sec=1.0,
            seconds=step * PROGRESS_EVERY,
        )  # fmt: skip
    _epoch_event(1, 1, 0.6)
    return _done(out, 0.6, 1, started)


def _scored(out: Path, started: float) -> int:
    table = dict(item.split(":") for item in os.environ.get("STANDIN_SCORES", "").split())
    key = f"{float(os.environ['MAX_LR']):g}@{os.environ.get('SEED', '0')}"
    value = float(table.get(key, "0.3"))
    epochs = _epochs()
    for epoch in range(1, epochs + 1):
        if epoch == epochs and out.parent.name == "confirm":
            time.sleep(_number("STANDIN_CONFIRM_SECONDS", 0.0))
        _epoch_event(epoch, epochs, value)
    return _done(out, value, epochs, started)


def _gather(out: Path, count: int) -> bool:
    """Leave a marker, then wait until ``count`` markers exist."""
    folder = out.parent.parent / "gather"
    folder.mkdir(exist_ok=True)
    (folder / out.name).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    deadline = time.monotonic() + GATHER_LIMIT
    while time.monotonic() < deadline:
        if len(list(folder.iterdir())) >= count:
            return True
        time.sleep(0.1)
    return False


def _report() -> dict[str, object]:
    """How this process was started: what a warm start must give exactly as a cold one."""
    return {
        "env": dict(os.environ),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "cpus": sorted(os.sched_getaffinity(0)),
        "threads": os.environ.get("CPU_THREADS"),
        "argv": sys.argv,
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "signals": {
            s.name: str(signal.getsignal(s))
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE)
        },
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ())),
        "stdin": os.read(0, 10).decode(),
        "name": __name__,
    }


def _process_probe(what: str) -> int:
    """``report``, ``hold`` and ``kill``: what the launcher gave the process, untouched."""
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "hold":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(os.environ["OUTPUT_DIR"], "child.pid").write_text(str(child.pid))
        _start_event()
        time.sleep(3600)
    print(json.dumps(_report()), flush=True)
    print("working", file=sys.stderr, flush=True)
    time.sleep(_number("STANDIN_HOLD", 0.0))
    return int(os.environ.get("STANDIN_EXIT") or 0)


def _claim(out: Path) -> bool:
    """With a ledger: lock the folder and record the run; False when another run holds it."""
    ledger = os.environ.get("STANDIN_LEDGER")
    if not ledger:
        return True
    record = Path(ledger) / f"{os.getpid()}-{time.monotonic_ns()}.json"
    lock = (out / ".run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        record.write_text(json.dumps({"pid": os.getpid(), "folder": str(out), "shared": True}))
        return False
    _HELD.append(lock)  # the lock lasts as long as the process
    record.write_text(json.dumps({"pid": os.getpid(), "folder": str(out), "started": time.time()}))
    return True


def main(argv: list[str] | None = None) -> int:
    """Run as the plan says for this run; the exit code."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(os.environ["OUTPUT_DIR"])
    plan = parse_plan(args[0] if args else os.environ.get("STANDIN_PLAN", ""))
    what = plan.get(out.name, plan.get("*", "done"))
    if what in ("report", "hold", "kill"):
        return _process_probe(what)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(int(ExitCode.STOPPED)))
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    if not _claim(out):
        print(f"error: another run is using {out}; nothing to do.", file=sys.stderr)
        return int(ExitCode.UNEXPECTED)
    (out / "env.json").write_text(json.dumps(dict(os.environ)))
    (out / "pid").write_text(str(os.getpid()))
    _start_event()
    if what in ("silent", "hang"):
        time.sleep(3600)
    if what == "slow":
        return _slow(out, started)
    if what.startswith("gather") and not _gather(out, int(what[len("gather") :])):
        print("error: the other runs never started; nothing to do.", file=sys.stderr)
        return 9
    if what == "scored":
        return _scored(out, started)
    return _train(out, "done" if what.startswith("gather") else what, started)


def shim(folder: Path) -> Path:
    """Make ``folder`` a place where ``python -m job`` runs this stand-in; return it.

    ``folder/job`` is a package whose ``__main__`` is this module and whose every other module
    is the real job's (``job.contract``, which the search imports). A process started there,
    with the repository on ``PYTHONPATH``, finds it first: a ``python -m search run`` driver
    started from ``folder`` launches the stand-in as its trials' job, through its own command
    line and nothing else.
    """
    real = PATH.parent.parent / "job"
    package = folder / "job"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        "# The job package with the stand-in as its __main__ (testkit.job.shim).\n"
        f"__path__.append({str(real)!r})\n"
        f"with open({str(real / '__init__.py')!r}) as _f:\n"
        f"    exec(compile(_f.read(), {str(real / '__init__.py')!r}, 'exec'))\n"
    )
    (package / "__main__.py").write_text(
        "import runpy\n\nrunpy.run_module('testkit.job', run_name='__main__', alter_sys=True)\n"
    )
    return folder


if __name__ == "__main__":
    sys.exit(main())
