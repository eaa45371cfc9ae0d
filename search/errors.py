"""Why a run is refused (:class:`SettingsError`, exit 2) or a study stops before its budget is
met (:class:`StudyStopped`; the CLI turns each into its exit code), and how an error is
shortened to one line for a message."""

from __future__ import annotations

from search.exits import DriverExit


class SettingsError(ValueError):
    """Options that cannot be honoured, or a study that refuses them; the message is the one
    sentence to show (exit 2)."""


class StudyStopped(RuntimeError):
    """A trial showed that every trial would fail the same way; ``code`` is the CLI's exit."""

    def __init__(self, code: DriverExit | int, message: str) -> None:
        super().__init__(message)
        self.code = int(code)


def first_line(exc: BaseException, text: str | None = None) -> str:
    """The first non-blank line of ``text`` (default: ``exc``'s message), or ``exc``'s type name
    when there is none."""
    lines = [line.strip() for line in (str(exc) if text is None else text).splitlines()]
    return next((line for line in lines if line), type(exc).__name__)
