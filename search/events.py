"""The job's JSON-line events, read back from a run's stdout (``docs/contract.md``: events).

Every launcher yields the job's stdout lines; the same parser turns them into events, so a
pipe, ``docker logs`` and a pod log read alike. Lines that are not events of this contract
version (progress text, a future version) are skipped.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from job.contract import EVENT_VERSION
from search.launchers.base import Run


class Silent(Exception):
    """The run emitted nothing for the trial timeout."""


class Interrupted(Exception):
    """The driver is stopping."""


def parse_event(line: str | bytes) -> dict[str, Any] | None:
    """One stdout line → an event dict, or None for a line that is not an event of this
    contract's version."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or "event" not in event:
        return None
    return event if event.get("v") == EVENT_VERSION else None


class EventStream:
    """A run's events as they come (iterate over it), read by a thread of its own.

    Iterating raises :class:`Silent` after ``timeout`` seconds without a line, and
    :class:`Interrupted` (within a second) once ``stop`` is set. The reader thread drains the
    run's stdout into a queue, so a slow consumer (a storage call that waits for the database)
    never blocks the job on a full pipe; :meth:`behind` tells the consumer that the job has
    already written more than it has read.
    """

    def __init__(self, run: Run, timeout: float, stop: threading.Event) -> None:
        self.timeout = timeout
        self.stop = stop
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._run = run
        threading.Thread(target=self._pump, daemon=True, name="pump").start()

    def _pump(self) -> None:
        try:
            for line in self._run.lines():
                self._lines.put(line)
        finally:
            self._lines.put(None)

    def behind(self) -> bool:
        """True when more output (or its end) is already waiting to be read."""
        return not self._lines.empty()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.stop.is_set():
                raise Interrupted
            try:
                wait = min(1.0, max(0.01, deadline - time.monotonic()))
                line = self._lines.get(timeout=wait)
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise Silent from None
                continue
            if line is None:
                return
            deadline = time.monotonic() + self.timeout
            event = parse_event(line)
            if event is not None:
                yield event
