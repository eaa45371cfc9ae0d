"""The job's contract with its callers, in one place (standard library only).

Everything a caller of ``python -m job`` relies on lives here and nowhere else: the environment
variables with their defaults and meaning, the exit codes, the events on stdout and their
fields, the files in ``OUTPUT_DIR``, and the search driver's own exit codes. The job and the
search both import this module; it is the only module of ``job`` the search may import, so it
never loads torch. ``docs/contract.md`` documents it and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal, TypedDict

# -- environment in ------------------------------------------------------------------------

DEFAULT_DATA_URL = "https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz"
"""The fast.ai mirror of CIFAR-10 (60,000 PNGs in ``cifar10/{train,test}/<class>/``)."""


@dataclass(frozen=True)
class VariableSpec:
    """One environment variable of the job: its default as the text of the variable, and help."""

    name: str
    default: str
    help: str


VARIABLES: tuple[VariableSpec, ...] = (
    VariableSpec(
        "DATA_URL",
        DEFAULT_DATA_URL,
        "http(s):// or file:// CIFAR-10 archive (fast.ai or python layout)",
    ),
    VariableSpec("DATA_SHA256", "", "when set, the archive must have this sha256"),
    VariableSpec("DATA_DIR", "data", "download and decoded-array cache, safe to share"),
    VariableSpec("OUTPUT_DIR", "output", "where the run writes everything"),
    VariableSpec("EPOCHS", "8", "training epochs"),
    VariableSpec("BATCH_SIZE", "400", "training batch size (images)"),
    VariableSpec("MAX_LR", "0.01", "peak learning rate of the one-cycle schedule"),
    VariableSpec("WEIGHT_DECAY", "0.0001", "optimizer weight decay"),
    VariableSpec("GRAD_CLIP", "0.1", "clip gradients to ±value; 0 disables"),
    VariableSpec("OPTIMIZER", "adam", "adam or sgd"),
    VariableSpec("SEED", "0", "all randomness derives from it"),
    VariableSpec("DEVICE", "auto", "auto, cpu, cuda or cuda:N"),
    VariableSpec(
        "PRECISION",
        "auto",
        "auto (bf16 autocast on CUDA and on CPUs with avx512_bf16 or amx_bf16, else fp32), "
        "fp32, bf16 or fp16",
    ),
    VariableSpec("COMPILE", "0", "1 uses torch.compile"),
    VariableSpec("MODEL_WIDTH", "1.0", "channel multiplier; 1.0 is the tutorial's ResNet9"),
    VariableSpec(
        "TRAIN_LIMIT", "0", "train on a fixed, seeded subset of this many images; 0 = all"
    ),
    VariableSpec("TEST_LIMIT", "0", "evaluate on a fixed, seeded subset; 0 = all"),
    VariableSpec(
        "PROMOTE_DIR",
        "",
        "after success, promote the model here if it beats the champion; empty = off",
    ),
)
"""Every variable the job reads, in ``--help`` order."""

VARIABLE_NAMES: frozenset[str] = frozenset(v.name for v in VARIABLES)

SET_PER_TRIAL: frozenset[str] = frozenset({"OUTPUT_DIR"})
"""Variables the search sets for each trial itself; a user may not pass them through."""

TUNED: tuple[str, ...] = ("MAX_LR", "WEIGHT_DECAY", "GRAD_CLIP", "BATCH_SIZE")
"""The variables the default search space tunes."""


def default(name: str) -> str:
    """The default of variable ``name`` as the text of the variable."""
    for var in VARIABLES:
        if var.name == name:
            return var.default
    raise KeyError(name)


# -- exit codes ----------------------------------------------------------------------------


class ExitCode(IntEnum):
    """How ``python -m job`` ends. Every non-zero exit prints one sentence on stderr and an
    ``error`` event on stdout (``docs/contract.md``: exit codes)."""

    DONE = 0
    UNEXPECTED = 1
    """A bug: the traceback is printed."""
    BAD_CONFIG = 2
    """A variable, an unwritable OUTPUT_DIR, a checkpoint from another configuration or a
    damaged one: fix it; never worth retrying."""
    NO_DATA = 3
    """The archive is unreachable, missing, corrupt, unsafe or DATA_DIR has no room."""
    DIVERGED = 4
    """A non-finite loss; the message names the epoch and step."""
    RESOURCES = 5
    """The machine ran out of something: the ``error`` event's ``reason`` says which."""
    INTERRUPTED = 130
    """Ctrl-C."""
    STOPPED = 143
    """SIGTERM, after the checkpoint was written: rerun with the same OUTPUT_DIR to resume."""


EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.DONE: "done",
    ExitCode.UNEXPECTED: "anything unexpected (a bug: the traceback is printed)",
    ExitCode.BAD_CONFIG: "bad configuration",
    ExitCode.NO_DATA: "data unavailable or invalid",
    ExitCode.DIVERGED: "training diverged",
    ExitCode.RESOURCES: "out of disk or memory (reason in the error event)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.STOPPED: "stopped by SIGTERM after checkpointing (rerun to resume)",
}
"""One line per exit code, for ``--help`` and the search's messages."""

Reason = Literal["disk", "memory"]
"""What ran out, for exit code 5: the ``reason`` of its ``error`` event."""
REASON_DISK: Reason = "disk"
REASON_MEMORY: Reason = "memory"


class DriverExit(IntEnum):
    """How ``python -m search run`` ends (``docs/contract.md``: driver exit codes)."""

    DONE = 0
    FAILURES = 1
    """Too many trials failed in a row, or a bug in the driver."""
    BAD_INPUT = 2
    """A bad option or search space, or the job rejected its configuration."""
    NO_DATA = 3
    """The job found no usable data: every trial would fail the same way."""
    RESOURCES = 5
    """A trial's disk filled up: every trial would fail the same way."""
    STORAGE = 6
    """The study's database stayed unreachable past ``--storage-retry``."""
    INTERRUPTED = 130
    STOPPED = 143
    """Stopped by SIGTERM before the budget was met: rerun the same command to continue."""


# -- events out ----------------------------------------------------------------------------

EVENT_VERSION = 1
"""Every event carries ``"v": EVENT_VERSION``; a caller ignores lines of another version."""

EventName = Literal["start", "epoch", "promote", "done", "error"]


class StartEvent(TypedDict):
    """Before the data is read: the resolved configuration."""

    v: int
    event: Literal["start"]
    config: dict[str, Any]
    device: str
    precision: str
    pid: int


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
    champion_val_acc: float | None
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
    "epoch": EpochEvent,
    "promote": PromoteEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}
"""Each event's name and its fields."""

# -- files out -----------------------------------------------------------------------------

CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS_JSON = "metrics.json"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
ACCURACY_PNG = "accuracy.png"
LOSSES_PNG = "losses.png"
LRS_PNG = "lrs.png"
SAMPLES_PNG = "samples.png"
JOB_LOG = "job.log"
"""Written by the search's launchers beside the job's files: the run's stderr."""

PLOTS: tuple[str, ...] = (ACCURACY_PNG, LOSSES_PNG, LRS_PNG, SAMPLES_PNG)
OUTPUTS: tuple[str, ...] = (
    CONFIG_JSON,
    HISTORY_JSON,
    HISTORY_CSV,
    METRICS_JSON,
    MODEL,
    CHECKPOINT,
    *PLOTS,
)
"""Every file a successful run leaves in OUTPUT_DIR."""

PROMOTED: tuple[str, ...] = (
    MODEL,
    METRICS_JSON,
    CONFIG_JSON,
    HISTORY_JSON,
    ACCURACY_PNG,
    LOSSES_PNG,
    LRS_PNG,
)
"""The files copied to ``PROMOTE_DIR/runs/<id>/`` when a run becomes the champion."""

ARTIFACTS: tuple[str, ...] = (
    HISTORY_JSON,
    METRICS_JSON,
    CONFIG_JSON,
    *PLOTS,
    JOB_LOG,
)
"""A trial's files the search uploads as Optuna artifacts (those that exist)."""
