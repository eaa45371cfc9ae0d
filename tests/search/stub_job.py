"""A stand-in job for driver tests: speaks the job's event protocol, no training.

``python stub_job.py PLAN``; PLAN maps trial numbers (the last part of OUTPUT_DIR) to a
behaviour, e.g. ``0=exit4,1=preempt,*=done``:
done (2 epochs then done), exitN (one epoch, then exit N with a sentence on stderr),
preempt (exit 143 on the first run, done when rerun in the same OUTPUT_DIR), silent (hang).
It writes its environment to OUTPUT_DIR/env.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"v": 1, "event": event, **fields}), flush=True)


def main() -> int:
    out = Path(os.environ["OUTPUT_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(dict(os.environ)))
    plan = dict(item.split("=") for item in sys.argv[1].split(","))
    what = plan.get(out.name, plan.get("*", "done"))
    emit("start", pid=os.getpid())
    if what == "silent":
        time.sleep(3600)
    epochs = int(os.environ.get("EPOCHS", "2"))
    runs = out / "runs"
    first_run = not runs.exists()
    runs.write_text("x")
    for epoch in range(1, epochs + 1):
        emit("epoch", epoch=epoch, epochs=epochs, val_acc=0.5 + 0.1 * epoch)
        if what.startswith("exit"):
            code = int(what[4:])
            print(f"error: stub failure with exit {code}; nothing to do.", file=sys.stderr)
            emit("error", code=code, message=f"stub failure {code}")
            return code
        if what == "preempt" and first_run:
            print("Stopped by SIGTERM; rerun to resume.", file=sys.stderr)
            return 143
    emit("done", val_acc=0.5 + 0.1 * epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
