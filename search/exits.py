"""The exit codes of each ``python -m search`` command, with one line of meaning each: the
end of every command's ``--help`` and the table in docs/search.md (a test keeps the two in
step). The codes and their meanings are :class:`job.contract.DriverExit` and
:data:`job.contract.DRIVER_EXIT_MEANINGS`.
"""

from __future__ import annotations

import textwrap

from job.contract import DRIVER_EXIT_MEANINGS, DriverExit

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
