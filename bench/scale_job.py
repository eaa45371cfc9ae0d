"""No figure: the scale bench's job (``bench/search_scale.py``); speaks the job's event
protocol, trains nothing, imports neither torch nor the ``job`` package.

``python bench/scale_job.py``, configured like the job: ``OUTPUT_DIR``, ``EPOCHS`` (default
3) and the search space's ``MAX_LR``, ``WEIGHT_DECAY``, ``GRAD_CLIP``, ``BATCH_SIZE``. It
sends ``start``, then one ``epoch`` every :data:`EPOCH_SECONDS`, then ``done``, with a
``val_acc`` that depends on the parameters (so the sampler has something to learn) and
grows with the epochs (so the median pruner has something to prune). SIGTERM ends it with
the job's exit 143, as a stopped job does.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from typing import Any

EPOCH_SECONDS = 0.15
"""Seconds one epoch takes: short, so that the driver, not the job, sets the pace."""

STOPPED = 143
"""The job's exit code when stopped by SIGTERM (job.contract.ExitCode.STOPPED)."""


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"v": 1, "event": event, **fields}, separators=(",", ":")), flush=True)


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def val_acc(epoch: int, epochs: int) -> float:
    """A deterministic accuracy that peaks at the tutorial's recipe and grows with epochs."""
    distance = (
        abs(math.log10(_float("MAX_LR", 0.01)) + 2)
        + 0.3 * abs(math.log10(_float("WEIGHT_DECAY", 1e-4)) + 4)
        + 0.2 * abs(math.log10(_float("GRAD_CLIP", 0.1)) + 1)
        + 0.1 * abs(_float("BATCH_SIZE", 400) - 400) / 400
    )
    return round(0.92 - 0.05 * distance - 0.2 * (epochs - epoch) / epochs, 6)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(STOPPED))
    out = os.environ["OUTPUT_DIR"]
    epochs = int(os.environ.get("EPOCHS", "3"))
    started = time.monotonic()
    _emit(
        "start", config={"EPOCHS": epochs}, device="cpu", precision="fp32", cpu_threads=1,
        pid=os.getpid(),
    )  # fmt: skip
    for epoch in range(1, epochs + 1):
        time.sleep(EPOCH_SECONDS)
        _emit(
            "epoch", epoch=epoch, epochs=epochs, train_loss=1.0 / epoch, val_loss=1.0 / epoch,
            val_acc=val_acc(epoch, epochs), lr=0.01, seconds=EPOCH_SECONDS, images_per_sec=0.0,
        )  # fmt: skip
    value = val_acc(epochs, epochs)
    _emit(
        "done", val_acc=value, best_val_acc=value, epochs=epochs,
        train_seconds=round(time.monotonic() - started, 3), images_per_sec=0.0, output_dir=out,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
