"""The job's output streams: JSON-line events on stdout, human progress on stderr.

The search driver reads stdout and nothing else, so stdout never carries anything but one
JSON object per line, each with ``"v": EVENT_VERSION`` and exactly the fields the contract's
TypedDict for that event names (docs/contract.md: events).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from job.contract import EVENT_VERSION, EVENTS
from job.records import TrainedEpoch


def _finite(value: Any) -> Any:
    # JSON has no NaN/Infinity; a diverged loss is reported as null rather than invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_fields(event: str, fields: set[str]) -> None:
    """Raise TypeError unless ``fields`` (plus ``v`` and ``event``) are exactly the contract's.

    A mismatch is a bug in the job, never bad input: the contract in ``job/contract.py`` is
    what every caller parses, so the job may not emit anything else.
    """
    kind = EVENTS.get(event)
    if kind is None:
        raise TypeError(f"unknown event {event!r}; the contract has {sorted(EVENTS)}")
    given = fields | {"v", "event"}
    required: frozenset[str] = getattr(kind, "__required_keys__", frozenset())
    optional: frozenset[str] = getattr(kind, "__optional_keys__", frozenset())
    missing, extra = required - given, given - required - optional
    if missing or extra:
        raise TypeError(
            f"event {event!r} does not match the contract: missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}"
        )


def emit(event: str, **fields: Any) -> None:
    """Write one event as a single JSON line on stdout and flush it.

    The fields are checked against the contract's TypedDict for ``event`` (see
    :func:`check_fields`).
    """
    check_fields(event, set(fields))
    record = {"v": EVENT_VERSION, "event": event, **{k: _finite(v) for k, v in fields.items()}}
    sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """Write one line of human-readable progress on stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class EpochReporter:
    """Reports each trained epoch: an ``epoch`` event on stdout, a progress line on stderr.

    The line's ETA is the epochs left times the mean seconds (training plus evaluation) of the
    epochs reported so far; call it with each :class:`TrainedEpoch` as training produces it.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self._seconds: list[float] = []

    def __call__(self, record: TrainedEpoch) -> None:
        seconds = record.train_seconds + record.eval_seconds
        self._seconds.append(seconds)
        emit(
            "epoch",
            epoch=record.epoch,
            epochs=self.epochs,
            train_loss=record.train_loss,
            val_loss=record.val_loss,
            val_acc=record.val_acc,
            lr=record.lrs[-1] if record.lrs else 0.0,
            seconds=seconds,
            images_per_sec=record.images_per_sec,
        )
        eta = (self.epochs - record.epoch) * sum(self._seconds) / len(self._seconds)
        log(
            f"epoch {record.epoch}/{self.epochs}  train_loss {record.train_loss:.4f}  "
            f"val_loss {record.val_loss:.4f}  val_acc {record.val_acc:.4f}  "
            f"{record.images_per_sec:.0f} img/s  ETA {dt.timedelta(seconds=round(eta))}"
        )


def report_done(metrics: Mapping[str, Any], output_dir: str) -> None:
    """The ``done`` event and the last progress line of a successful run, from its metrics."""
    emit(
        "done",
        val_acc=metrics["val_acc"],
        best_val_acc=metrics["best_val_acc"],
        epochs=metrics["epochs"],
        train_seconds=metrics["train_seconds"],
        images_per_sec=metrics["images_per_sec"],
        output_dir=output_dir,
        data_sha256=metrics["data_sha256"],
        code_sha256=metrics["code_sha256"],
    )
    log(f"done: val_acc {metrics['val_acc']:.4f} in {metrics['wall_seconds']:.1f} s")
