"""SIGTERM handling: stop cleanly at a step boundary so the checkpoint stays consistent."""

from __future__ import annotations

import signal
from types import FrameType

from job.errors import StoppedError

_stop = False
_training = False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True
    if not _training:
        # Outside the training loop there is no partial state worth keeping: stop now.
        raise StoppedError("Stopped by SIGTERM before training began; rerun to start again.")


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
