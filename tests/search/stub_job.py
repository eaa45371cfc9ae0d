"""A stand-in job for driver tests: speaks the job's event protocol, no training.

``python stub_job.py PLAN``; PLAN maps trial numbers (the last part of OUTPUT_DIR) to a
behaviour, e.g. ``0=exit4,1=preempt,*=done``:

- ``done``: EPOCHS epochs (val_acc 0.5 + 0.1 × epoch), then done;
- ``low``: the same with a poor val_acc (0.2 + 0.01 × epoch), a trial the pruner dislikes,
  and an epoch's worth of time (LOW_EPOCH_SECONDS) between epochs, as a real run has: the
  driver decides on pruning only on a run's latest epoch;
- ``exitN`` or ``exitN-REASON``: one epoch, then exit N with a sentence on stderr and an
  error event (carrying ``reason`` REASON when given, e.g. ``exit5-memory``);
- ``preempt``: exit 143 on the first run, done when rerun in the same OUTPUT_DIR;
- ``silent``: hang;
- ``slow``: one epoch of SLOW_EPOCH_SECONDS that sends a ``progress`` event every
  PROGRESS_EVERY seconds (an epoch longer than a short ``--trial-timeout``), then done;
- ``scored``: EPOCHS epochs whose val_acc is the score STUB_SCORES gives this run's MAX_LR
  and SEED (``LR@SEED:VALUE`` items, space-separated, LR written as ``%g``; 0.3 when absent),
  so a configuration can be lucky on one seed; a confirmation run (OUTPUT_DIR under
  ``confirm/``) waits STUB_CONFIRM_SECONDS (default 0) before its last epoch;
- ``gatherN``: wait until N stub runs of the study are running at once (each leaves a
  marker in ``<study output>/gather/``), then done; exit 9 if that never happens.

It writes its environment to OUTPUT_DIR/env.json and its pid to OUTPUT_DIR/pid.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

LOW_EPOCH_SECONDS = 1.5
"""Seconds a ``low`` run spends between two epochs."""

SLOW_EPOCH_SECONDS = 3.0
PROGRESS_EVERY = 0.25
"""A ``slow`` run's epoch and the seconds between its progress events."""

GATHER_LIMIT = 120.0
"""Seconds a ``gatherN`` run waits for the others before it gives up (a failure, not a hang)."""


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"v": 1, "event": event, **fields}), flush=True)


def gather(out: Path, count: int) -> bool:
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


def scored(out: Path, epochs: int) -> int:
    table = dict(item.split(":") for item in os.environ.get("STUB_SCORES", "").split())
    key = f"{float(os.environ['MAX_LR']):g}@{os.environ.get('SEED', '0')}"
    value = float(table.get(key, "0.3"))
    for epoch in range(1, epochs + 1):
        if epoch == epochs and out.parent.name == "confirm":
            time.sleep(float(os.environ.get("STUB_CONFIRM_SECONDS", "0")))
        emit("epoch", epoch=epoch, epochs=epochs, val_acc=value)
    emit("done", val_acc=value)
    return 0


def main() -> int:
    out = Path(os.environ["OUTPUT_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(dict(os.environ)))
    (out / "pid").write_text(str(os.getpid()))
    plan = dict(item.split("=") for item in sys.argv[1].split(","))
    what = plan.get(out.name, plan.get("*", "done"))
    emit("start", pid=os.getpid())
    if what == "silent":
        time.sleep(3600)
    if what == "slow":
        steps = round(SLOW_EPOCH_SECONDS / PROGRESS_EVERY)
        for step in range(1, steps + 1):
            time.sleep(PROGRESS_EVERY)
            emit("progress", epoch=1, epochs=1, step=step, steps=steps, images_per_sec=1.0)
        emit("epoch", epoch=1, epochs=1, val_acc=0.6)
        emit("done", val_acc=0.6)
        return 0
    if what.startswith("gather") and not gather(out, int(what[len("gather") :])):
        print("error: the other runs never started; nothing to do.", file=sys.stderr)
        return 9
    epochs = int(os.environ.get("EPOCHS", "2"))
    if what == "scored":
        return scored(out, epochs)
    base, step = (0.2, 0.01) if what == "low" else (0.5, 0.1)
    runs = out / "runs"
    first_run = not runs.exists()
    runs.write_text("x")
    for epoch in range(1, epochs + 1):
        emit("epoch", epoch=epoch, epochs=epochs, val_acc=base + step * epoch)
        if what.startswith("exit"):
            number, _, reason = what[len("exit") :].partition("-")
            code = int(number)
            print(f"error: stub failure with exit {code}; nothing to do.", file=sys.stderr)
            emit(
                "error",
                code=code,
                message=f"stub failure {code}",
                **({"reason": reason} if reason else {}),
            )
            return code
        if what == "preempt" and first_run:
            print("Stopped by SIGTERM; rerun to resume.", file=sys.stderr)
            return 143
        if what == "low" and epoch < epochs:
            time.sleep(LOW_EPOCH_SECONDS)
    emit("done", val_acc=base + step * epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
