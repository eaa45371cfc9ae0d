"""Progress inside an epoch: a live bar on a terminal, else a line and a ``progress`` event
every PROGRESS_SECONDS.

The training loop calls :meth:`EpochProgress.step` after each step with the step number only:
progress reads the step counter and the clock, never the loss, so it adds no host
synchronisation (on CUDA the count is of steps handed to the device).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from typing import Any, TextIO

from job.events import emit, log


class EpochProgress:
    """One epoch's progress reports; ``every`` seconds between reports (0: none)."""

    def __init__(
        self,
        epoch: int,
        epochs: int,
        steps: int,
        batch_size: int,
        images: int,
        every: float,
        stream: TextIO | None = None,
    ) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.batch_size, self.images = batch_size, images
        self.every = every
        self._start = time.monotonic()
        self._next = self._start + every
        stream = sys.stderr if stream is None else stream
        self._bar = _bar(epoch, epochs, images, stream) if every and _tty(stream) else None

    def _done(self, step: int) -> int:
        """Training images of steps 1 … ``step`` (the last batch may be short)."""
        return min(step * self.batch_size, self.images)

    def step(self, step: int) -> None:
        """Step ``step`` (1-based) was handed to the device."""
        if self._bar is not None:
            self._bar.update(self._done(step) - self._bar.n)
        if not self.every:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        self._report(step, now - self._start)

    def close(self) -> None:
        """The epoch's steps are done: take the bar down (the epoch line follows)."""
        if self._bar is not None:
            self._bar.close()

    def _report(self, step: int, seconds: float) -> None:
        rate = self._done(step) / seconds if seconds > 0 else 0.0
        emit(
            "progress",
            epoch=self.epoch,
            epochs=self.epochs,
            step=step,
            steps=self.steps,
            images_per_sec=rate,
            seconds=seconds,
        )
        if self._bar is None:  # on a terminal the bar already says it
            eta = (self.steps - step) * seconds / step
            log(
                f"epoch {self.epoch}/{self.epochs}  step {step}/{self.steps}  {rate:.0f} img/s  "
                f"epoch ETA {dt.timedelta(seconds=round(eta))}"
            )


def _tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def _size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and rows; 80 × 24 for one that reports none (a pseudo-terminal
    nobody sized reports 0 × 0, and tqdm would then draw nothing)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


def _bar(epoch: int, epochs: int, images: int, stream: TextIO) -> Any:
    """tqdm's bar over the epoch's images (so its rate is images/s), with the epoch's ETA."""
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

    columns, rows = _size(stream)

    return tqdm(
        total=images,
        desc=f"epoch {epoch}/{epochs}",
        unit="img",
        file=stream,
        ncols=columns,
        nrows=rows,
        leave=False,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n}/{total} img "
        "[{elapsed}<{remaining}, {rate_fmt}]",
    )
