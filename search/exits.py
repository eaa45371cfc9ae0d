"""The exit codes of ``python -m search`` (:class:`DriverExit`), each with one line of
meaning (:data:`DRIVER_EXIT_MEANINGS`): the end of every command's ``--help`` and the tables
in docs/search.md and docs/contract.md (tests keep them in step).
"""

from __future__ import annotations

import textwrap
from enum import IntEnum


class DriverExit(IntEnum):
    """How ``python -m search run`` ends (``docs/contract.md``: driver exit codes); each
    code's meaning is :data:`DRIVER_EXIT_MEANINGS`."""

    DONE = 0
    FAILURES = 1
    BAD_INPUT = 2
    NO_DATA = 3
    RESOURCES = 5
    STORAGE = 6
    INTERRUPTED = 130
    STOPPED = 143


MISPLACED = -2
"""A trial's ``exit_code`` (user attribute) when its run trained on another device than the
one it was placed on (its ``start`` event's ``device``): the run was stopped at once and the
trial failed (``-1``, the launcher's ``LOST``, is a run that disappeared)."""


DRIVER_EXIT_MEANINGS: dict[DriverExit, str] = {
    DriverExit.DONE: "done (run: the study holds its --trials finished trials, or --timeout "
    "passed first: rerun to continue)",
    DriverExit.FAILURES: "too many trials failed in a row, or a bug in the driver",
    DriverExit.BAD_INPUT: "bad input, said in one sentence: an option, the search space, a "
    "missing study, a study started with other settings, or a configuration the job rejected",
    DriverExit.NO_DATA: "the job found no usable data: every trial would fail the same way",
    DriverExit.RESOURCES: "a trial's disk filled up: every trial would fail the same way",
    DriverExit.STORAGE: "the study's database is unusable (unreachable past --storage-retry, "
    "or an error no retry cures)",
    DriverExit.INTERRUPTED: "interrupted (Ctrl-C)",
    DriverExit.STOPPED: "stopped by SIGTERM before the budget was met or the confirmation "
    "phase finished: rerun the same command to continue",
}
"""One line per driver exit code: the end of each ``python -m search`` command's ``--help``
and the tables in docs/contract.md and docs/search.md."""

_READING = (DriverExit.DONE, DriverExit.BAD_INPUT, DriverExit.STORAGE, DriverExit.INTERRUPTED)

COMMAND_EXITS: dict[str, tuple[DriverExit, ...]] = {
    "run": tuple(DriverExit),
    "best": _READING,
    "report": _READING,
    "dashboard": _READING,
}
"""The codes each command can end with (a command that only reads the study fails only on
its input, its database or Ctrl-C)."""


def epilog(command: str | None = None) -> str:
    """The ``Exit codes:`` block ending ``command``'s ``--help`` (all codes, with the
    commands that return each, for the group's). ``\\b`` keeps click from rewrapping it."""
    if command is not None:
        lines = [_line(code) for code in COMMAND_EXITS[command]]
    else:
        lines = [_line(code, f" [{_commands(code)}]") for code in DriverExit]
    return "\b\nExit codes:\n" + "\n".join(lines)


_WIDTH = 76
"""Columns of an exit code's lines; click indents the epilog by 2 more and does not rewrap it."""


def _line(code: DriverExit, extra: str = "") -> str:
    """``  143  meaning…``, wrapped under the meaning."""
    return textwrap.fill(
        DRIVER_EXIT_MEANINGS[code] + extra,
        width=_WIDTH,
        initial_indent=f"  {int(code):>3}  ",
        subsequent_indent=" " * 7,
    )


def _commands(code: DriverExit) -> str:
    return ", ".join(name for name, codes in COMMAND_EXITS.items() if code in codes)
