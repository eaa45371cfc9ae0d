"""The job's output streams: JSON-line events on stdout, human progress on stderr.

The search driver reads stdout and nothing else, so stdout never carries anything but one
JSON object per line, each with ``"v": EVENT_VERSION`` and exactly the fields the contract's
TypedDict for that event names (docs/contract.md: events).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from job.contract import EVENT_VERSION, EVENTS


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
