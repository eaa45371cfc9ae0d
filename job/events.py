"""The job's output streams: JSON-line events on stdout, human progress on stderr.

The search driver reads stdout and nothing else, so stdout never carries anything but one
JSON object per line, each with ``"v": 1`` (DESIGN.md: event format).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

EVENT_VERSION = 1


def _finite(value: Any) -> Any:
    # JSON has no NaN/Infinity; a diverged loss is reported as null rather than invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit(event: str, **fields: Any) -> None:
    """Write one event as a single JSON line on stdout and flush it."""
    record = {"v": EVENT_VERSION, "event": event, **{k: _finite(v) for k, v in fields.items()}}
    sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """Write one line of human-readable progress on stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
