"""SIGTERM handling: stop cleanly at a step boundary so the checkpoint stays consistent.

Outside the training loop a SIGTERM stops the run at once, with the sentence of the stage it
interrupted (:func:`set_stage`): what is already on disk and what a rerun does.
"""

from __future__ import annotations

import signal
from types import FrameType

from job.contract import CHECKPOINT
from job.errors import StoppedError

BEFORE_TRAINING = "before training began; rerun to start again."
WRITING_OUTPUTS = (
    f"while writing the outputs after training; {CHECKPOINT} holds every epoch: rerun with "
    "the same OUTPUT_DIR to write them without training again."
)
PROMOTING = (
    "while promoting to PROMOTE_DIR; the run's outputs are written: rerun with the same "
    "OUTPUT_DIR to finish the promotion."
)
EXITING = (
    "after the run finished, while exiting; every output is written: a rerun with the same "
    "OUTPUT_DIR ends at once."
)
"""The stages outside the training loop, each the end of the sentence a SIGTERM there stops
the run with ("Stopped by SIGTERM " + stage)."""

_stop = False
_training = False
_stage = BEFORE_TRAINING


def _handler(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True
    if not _training:
        # Outside the training loop there is no partial state worth keeping: stop now.
        raise StoppedError(f"Stopped by SIGTERM {_stage}")


def install() -> None:
    """Route SIGTERM (docker stop, Kubernetes) to a graceful stop."""
    signal.signal(signal.SIGTERM, _handler)


def stop_requested() -> bool:
    """True once SIGTERM has arrived."""
    return _stop


def set_training(active: bool) -> None:
    """While True, SIGTERM only sets a flag that the loop checks at each step."""
    global _training
    _training = active


def set_stage(stage: str) -> None:
    """The stage the run is in outside the training loop: one of this module's constants,
    what a SIGTERM now interrupts."""
    global _stage
    _stage = stage
