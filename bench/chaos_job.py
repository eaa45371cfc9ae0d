"""No figure: the chaos soak's job (``bench/search_chaos.py``); speaks the job's event
protocol, trains nothing.

``python bench/chaos_job.py``, configured like the job (``OUTPUT_DIR``, ``EPOCHS``,
``MAX_LR`` from the search space) plus ``CHAOS_PLAN`` (trial number = behaviour, e.g.
``7=hang,12=memory``) and ``CHAOS_LEDGER`` (a folder where each run leaves a record):

- by default: ``EPOCHS`` epochs of :data:`EPOCH_SECONDS` each, then ``done`` with a
  ``val_acc`` computed from ``MAX_LR``, which it also writes to ``OUTPUT_DIR/result.json``;
- ``hang``: after its start event, nothing (the driver's silence timeout must end it);
- ``memory``: one epoch, then the job's out-of-memory exit (5, reason ``memory``).

A run holds an exclusive lock on ``OUTPUT_DIR/.run.lock`` while it runs; a second run in
the same folder at once records ``shared`` in the ledger and exits 1. A run whose output
folder disappears says so and exits 1.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sys
import time
from pathlib import Path

EPOCH_SECONDS = 0.4
"""Seconds one epoch takes: the time a fault has to strike a run mid-way."""


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"v": 1, "event": event, **fields}), flush=True)


def _record(ledger: Path, **fields: object) -> None:
    path = ledger / f"{os.getpid()}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"pid": os.getpid(), **fields}))


def _val_acc(max_lr: float, epoch: int, epochs: int) -> float:
    """A deterministic accuracy that peaks at max_lr = 0.01 and grows with the epochs."""
    return round(0.9 - 0.1 * abs(math.log10(max_lr) + 2) - 0.2 * (epochs - epoch) / epochs, 6)


def main() -> int:
    out = Path(os.environ["OUTPUT_DIR"])
    ledger = Path(os.environ["CHAOS_LEDGER"])
    plan = dict(p.split("=") for p in os.environ.get("CHAOS_PLAN", "").split(",") if p)
    what = plan.get(out.name, "run")
    out.mkdir(parents=True, exist_ok=True)
    lock = (out / ".run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _record(ledger, folder=str(out), shared=True)
        print(f"error: another run is using {out}; nothing to do.", file=sys.stderr)
        return 1
    _record(ledger, folder=str(out), started=time.time())
    _emit("start", pid=os.getpid())
    if what == "hang":
        time.sleep(3600)
    epochs = int(os.environ.get("EPOCHS", "4"))
    max_lr = float(os.environ.get("MAX_LR", "0.01"))
    for epoch in range(1, epochs + 1):
        time.sleep(EPOCH_SECONDS)
        if not out.is_dir():
            print(f"error: the output folder {out} disappeared; nothing to do.", file=sys.stderr)
            return 1
        _emit("epoch", epoch=epoch, epochs=epochs, val_acc=_val_acc(max_lr, epoch, epochs))
        if what == "memory":
            print("error: out of memory; use a smaller batch.", file=sys.stderr)
            _emit("error", code=5, message="out of memory", reason="memory")
            return 5
    value = _val_acc(max_lr, epochs, epochs)
    try:
        (out / "result.json").write_text(json.dumps({"val_acc": value}))
    except OSError:
        print(f"error: the output folder {out} disappeared; nothing to do.", file=sys.stderr)
        return 1
    _emit("done", val_acc=value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
