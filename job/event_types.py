"""The events the job writes on stdout, one JSON object a line, and their fields.

Part of the contract (:mod:`job.contract` re-exports every name): standard library only, so the
search reads it without loading torch. ``docs/contract.md`` documents each event.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Reason = Literal["disk", "memory"]
"""What ran out, for exit code 5: the ``reason`` of its ``error`` event."""

EVENT_VERSION = 1
"""Every event carries ``"v": EVENT_VERSION``; a caller ignores lines of another version."""


class StartEvent(TypedDict):
    """Before the data is read: the resolved configuration."""

    v: int
    event: Literal["start"]
    config: dict[str, Any]
    device: str
    precision: str
    cpu_threads: int
    """torch's CPU threads, CPU_THREADS resolved."""
    pid: int
    precision_reason: str
    """Why ``precision``, one phrase (added in v 1: fields are added, never renamed)."""


class ProgressEvent(TypedDict):
    """Every PROGRESS_SECONDS while an epoch trains: the steps handed to the device so far."""

    v: int
    event: Literal["progress"]
    epoch: int
    epochs: int
    step: int
    steps: int
    images_per_sec: float
    """Training images of the steps so far per second since the epoch began."""
    seconds: float
    """Seconds since the epoch began."""


class EpochEvent(TypedDict):
    """After each epoch's evaluation."""

    v: int
    event: Literal["epoch"]
    epoch: int
    epochs: int
    train_loss: float | None
    val_loss: float | None
    val_acc: float
    lr: float
    seconds: float
    images_per_sec: float


class PromoteEvent(TypedDict):
    """After a successful run with PROMOTE_DIR set: the champion decision."""

    v: int
    event: Literal["promote"]
    promoted: bool
    val_acc: float
    """This run's (the challenger's) final val_acc."""
    champion_val_acc: float | None
    """The champion's model evaluated on this run's test split; None without a usable one."""
    champion_recorded_val_acc: float | None
    """The val_acc the champion recorded on its own test split; None without a champion."""
    margin: float
    """PROMOTE_MARGIN: promoted only when val_acc > champion_val_acc + margin."""
    reason: str
    """The decision in one sentence."""
    champion: str


class DoneEvent(TypedDict):
    """The last event of a successful run."""

    v: int
    event: Literal["done"]
    val_acc: float
    best_val_acc: float
    epochs: int
    train_seconds: float
    images_per_sec: float
    output_dir: str
    data_sha256: str
    """The archive's sha256, as in metrics.json."""
    code_sha256: str
    """The job's code digest (:mod:`job.code`), as in metrics.json: with ``data_sha256`` it
    tells a caller whether two runs ran the same code on the same data."""


class _ErrorEventBase(TypedDict):
    v: int
    event: Literal["error"]
    code: int
    message: str


class ErrorEvent(_ErrorEventBase, total=False):
    """The last event of a failed run; ``reason`` is present with code 5."""

    reason: Reason


EVENTS: dict[str, type] = {
    "start": StartEvent,
    "progress": ProgressEvent,
    "epoch": EpochEvent,
    "promote": PromoteEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}
"""Each event's name and its fields."""
