"""The job's contract with its callers, in one place (standard library only).

Everything a caller of ``python -m job`` relies on lives here and nowhere else: the environment
variables with their defaults and meaning, the exit codes, the events on stdout and their
fields, the files in ``OUTPUT_DIR``. The job and the search both import this module, so it uses
the standard library only (and the value parsers of :mod:`job.parsers`) and never loads torch.
``docs/contract.md`` documents it and a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

from job import event_types, parsers
from job.event_types import EVENT_VERSION as EVENT_VERSION
from job.event_types import EVENTS as EVENTS
from job.event_types import DoneEvent as DoneEvent
from job.event_types import EpochEvent as EpochEvent
from job.event_types import ErrorEvent as ErrorEvent
from job.event_types import ProgressEvent as ProgressEvent
from job.event_types import PromoteEvent as PromoteEvent
from job.event_types import StartEvent as StartEvent

# -- environment in ------------------------------------------------------------------------
DEFAULT_DATA_URL = "https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz"
"""The fast.ai mirror of CIFAR-10 (60,000 PNGs in ``cifar10/{train,test}/<class>/``)."""

IMAGE_FORMATS = "PNG, JPEG, WebP, BMP or GIF"
"""The picture formats the job trains on and ``predict`` reads, as messages name them
(:mod:`job.data.images` decodes them)."""


_T = TypeVar("_T")
_SPEC = "resnet-job.variable"  # the key of a Variables field's metadata


@dataclass(frozen=True)
class VariableSpec:
    """One environment variable of the job, as :class:`Variables` declares it.

    ``default`` is the text of the variable (what ``--help`` shows); ``parse`` turns a text into
    the value or raises ValueError saying what is allowed; ``fingerprint`` says whether the
    value shapes the run's result (a checkpoint must match it to resume); ``tunable`` whether
    a search space may tune it.
    """

    name: str
    default: str
    help: str
    parse: Callable[[str], Any]
    fingerprint: bool
    tunable: bool

    @property
    def field(self) -> str:
        """The :class:`Variables` field it sets: the name in lower case."""
        return self.name.lower()


def _variable(
    default: str,
    parse: Callable[[str], _T],
    help: str,
    *,
    fingerprint: bool = True,
    tunable: bool = False,
) -> _T:
    """A :class:`Variables` field: its default is ``parse(default)``; the rest is metadata."""
    spec = {"default": default, "help": help, "parse": parse}
    spec |= {"fingerprint": fingerprint, "tunable": tunable}
    return field(default=parse(default), metadata={_SPEC: spec})


@dataclass(frozen=True)
class Variables:
    """Every environment variable the job reads, declared once, in ``--help`` order.

    A field is the variable in lower case; its declaration holds the default (the tutorial's
    recipe, as the variable's text), the parser, the help and whether the value belongs to the
    checkpoint fingerprint (where files live, which device runs it and whether it is compiled
    do not change the recipe, so a run stopped on one node may resume on another).
    :class:`job.config.Config` is this plus what a run derives from it.
    """

    data_url: str = _variable(
        DEFAULT_DATA_URL,
        parsers.url,
        "http(s):// or file:// archive (.tar, .tar.gz/.tgz, .zip) or file:// folder: CIFAR-10 "
        "(fast.ai or python layout) or labelled images (train/<class>/ with test/<class>/, or "
        "<class>/ alone)",
        fingerprint=False,
    )
    data_sha256: str = _variable("", parsers.sha256, "when set, the archive must have this sha256")
    image_size: int = _variable(
        "32",
        parsers.number(int, 8, below=1025, hint="32"),
        "side in pixels the job trains at: each image's shorter side is resized to it, then "
        "centre-cropped, once, when the cache is built",
    )
    test_fraction: float = _variable(
        "0.2",
        parsers.number(float, 0, exclusive=True, below=1, hint="0.2"),
        "share of each class held out for testing when the data has no test/ folder; the "
        "split does not depend on SEED",
    )
    bad_images: str = _variable(
        "fail",
        parsers.choice("fail", "skip"),
        "fail: an image that cannot be decoded stops the run (exit 3); skip: it is left out and "
        "counted in the data report",
    )
    stream_data: str = _variable(
        "auto",
        parsers.choice("auto", "0", "1"),
        "auto: read batches from the memory-mapped cache when the decoded images exceed a "
        "quarter of the memory the container has, else copy them into memory; 1 always; 0 never",
        fingerprint=False,
    )
    data_dir: Path = _variable(
        "data", parsers.path, "download and decoded-array cache, safe to share", fingerprint=False
    )
    output_dir: Path = _variable(
        "output", parsers.path, "where the run writes everything", fingerprint=False
    )
    epochs: int = _variable("8", parsers.number(int, 1, hint="8"), "training epochs", tunable=True)
    batch_size: int = _variable(
        "400", parsers.number(int, 1, hint="400"), "training batch size (images)", tunable=True
    )
    max_lr: float = _variable(
        "0.01",
        parsers.number(float, 0, exclusive=True, hint="0.01"),
        "peak learning rate of the one-cycle schedule",
        tunable=True,
    )
    weight_decay: float = _variable(
        "0.0001", parsers.number(float, 0, hint="1e-4"), "optimizer weight decay", tunable=True
    )
    grad_clip: float = _variable(
        "0.1",
        parsers.number(float, 0, hint="0.1"),
        "clip gradients to ±value; 0 disables",
        tunable=True,
    )
    label_smoothing: float = _variable(
        "0",
        parsers.number(float, 0, below=1, hint="0.1"),
        "cross-entropy label smoothing of the training loss, in [0, 1); 0 = none (the tutorial)",
        tunable=True,
    )
    optimizer: str = _variable("adam", parsers.choice("adam", "sgd"), "adam or sgd", tunable=True)
    seed: int | str = _variable(
        "0",
        parsers.seed,
        "all randomness derives from it; random = a seed drawn once for OUTPUT_DIR "
        "(a resumed run keeps it) and recorded",
    )
    device: str = _variable("auto", parsers.device, "auto, cpu, cuda or cuda:N", fingerprint=False)
    precision: str = _variable(
        "auto",
        parsers.choice("auto", "fp32", "bf16", "fp16"),
        "auto (bf16 autocast on GPUs of compute capability >= 8.0 and on CPUs with avx512_bf16 "
        "or amx_bf16; fp16 with a gradient scaler on older GPUs; else fp32), fp32, bf16 or fp16",
    )
    compile: bool = _variable(
        "0",
        parsers.flag,
        "1 compiles the training step with torch.compile (needs a C++ compiler and Python headers)",
        fingerprint=False,
    )
    cpu_threads: int | str = _variable(
        "auto",
        parsers.count_or_auto,
        "torch's CPU threads; auto = the fewest of the affinity mask, the cgroup CPU quota "
        "and OMP_NUM_THREADS",
        fingerprint=False,
    )
    model_width: float = _variable(
        "1.0",
        parsers.number(float, 0, exclusive=True, hint="0.25"),
        "channel multiplier; 1.0 is the tutorial's ResNet9",
        tunable=True,
    )
    train_limit: int = _variable(
        "0",
        parsers.number(int, 0, hint="5000"),
        "train on a fixed, seeded subset of this many images; 0 = all",
    )
    test_limit: int = _variable(
        "0", parsers.number(int, 0, hint="2000"), "evaluate on a fixed, seeded subset; 0 = all"
    )
    promote_dir: Path | None = _variable(
        "",
        parsers.optional_path,
        "after success, promote the model here if it beats the champion; empty = off",
        fingerprint=False,
    )
    promote_margin: float = _variable(
        # 1.645 × √2 × 0.016, the std of val_acc over seeds measured at MODEL_WIDTH=0.25
        # TRAIN_LIMIT=5000 EPOCHS=4 (docs/contract.md: Promotion).
        "0.037",
        parsers.number(float, 0, hint="0.01"),
        "promote only when val_acc beats the champion, re-evaluated on this run's test split, "
        "by more than this (a seed's noise)",
        fingerprint=False,
    )
    progress_seconds: float = _variable(
        "30",
        parsers.number(float, 0, hint="30"),
        "seconds between progress lines and events inside an epoch; 0 = off",
        fingerprint=False,
    )


VARIABLES: tuple[VariableSpec, ...] = tuple(
    VariableSpec(name=f.name.upper(), **f.metadata[_SPEC]) for f in fields(Variables)
)
"""Every variable the job reads, in ``--help`` order (the fields of :class:`Variables`)."""

VARIABLE_NAMES: frozenset[str] = frozenset(v.name for v in VARIABLES)
_BY_NAME = {v.name: v for v in VARIABLES}

SET_PER_TRIAL: frozenset[str] = frozenset({"OUTPUT_DIR"})
"""Variables the search sets for each trial itself; a user may not pass them through."""

TUNABLE: dict[str, str] = {v.field: v.name for v in VARIABLES if v.tunable}
"""Parameters a search space may tune (``max_lr``), and the job variable each one sets."""

TUNED: tuple[str, ...] = ("MAX_LR", "WEIGHT_DECAY", "GRAD_CLIP", "BATCH_SIZE")
"""The variables the default search space tunes."""


def variable(name: str) -> VariableSpec:
    """The declaration of variable ``name``; KeyError for a name the job does not read."""
    return _BY_NAME[name]


def default(name: str) -> str:
    """The default of variable ``name`` as the text of the variable."""
    return variable(name).default


RESOLVED_PRECISION = "resolved_precision"
"""The key, in a run's checkpoint fingerprint and config.json, of the arithmetic the run
resolved (fp32, bf16, fp16): checkpoints written before it was recorded lack it, and so does the
bare configuration (:func:`job.previous.claim` compares that before the device is known)."""


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
    DEVICE_FAILED = 6
    """The GPU failed (a CUDA error other than out-of-memory): CUDA stays unusable in this
    process, so nothing more is trained, evaluated or promoted; rerun on a healthy GPU."""
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
    ExitCode.DEVICE_FAILED: "the GPU failed (a CUDA error): nothing was promoted; rerun on a "
    "healthy GPU",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.STOPPED: "stopped by SIGTERM after checkpointing (rerun to resume)",
}
"""One line per exit code, for ``--help`` and the search's messages."""

Reason = event_types.Reason
REASON_DISK: Reason = "disk"
REASON_MEMORY: Reason = "memory"


# -- events out: job/event_types.py, re-exported above -----------------------------------

# -- files out -----------------------------------------------------------------------------

CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS_JSON = "metrics.json"
MODEL = "model.pt"
EXPORTED_MODEL = "model.torchscript.pt"
"""The trained model as TorchScript with its normalisation: ``torch.jit.load`` alone runs it."""
CLASSES_JSON = "classes.json"
"""The class names, in the order of the model's outputs."""
CHECKPOINT = "checkpoint.pt"
DATA_REPORT = "data_report.json"
"""What the run's data held: images per class and split, sizes and colour modes seen, skipped
files, exact duplicates between train and test (docs/images.md: the data report)."""
ACCURACY_PNG = "accuracy.png"
LOSSES_PNG = "losses.png"
LRS_PNG = "lrs.png"
SAMPLES_PNG = "samples.png"
PREVIOUS = "previous"
"""The folder of OUTPUT_DIR where a finished run's outputs are moved, as
``previous/<UTC time>-<fingerprint sha256 prefix>/``, when a run of another configuration
starts there (docs/contract.md: one OUTPUT_DIR, one run)."""
JOB_LOG = "job.log"
"""Written by the search's launchers beside the job's files: the run's stderr."""

PLOTS: tuple[str, ...] = (ACCURACY_PNG, LOSSES_PNG, LRS_PNG, SAMPLES_PNG)
OUTPUTS: tuple[str, ...] = (
    CONFIG_JSON,
    HISTORY_JSON,
    HISTORY_CSV,
    METRICS_JSON,
    MODEL,
    EXPORTED_MODEL,
    CLASSES_JSON,
    CHECKPOINT,
    DATA_REPORT,
    *PLOTS,
)
"""Every file a successful run leaves in OUTPUT_DIR."""

PROMOTED: tuple[str, ...] = (
    MODEL,
    EXPORTED_MODEL,
    CLASSES_JSON,
    METRICS_JSON,
    CONFIG_JSON,
    HISTORY_JSON,
    ACCURACY_PNG,
    LOSSES_PNG,
    LRS_PNG,
)
"""The files copied to ``PROMOTE_DIR/runs/<id>/`` when a run becomes the champion."""

ARTIFACTS: tuple[str, ...] = (HISTORY_JSON, METRICS_JSON, CONFIG_JSON, *PLOTS, JOB_LOG)
"""A trial's files the search uploads as Optuna artifacts (those that exist)."""
