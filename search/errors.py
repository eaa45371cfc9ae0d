"""Why a study stops before its budget is met; the CLI turns each into its exit code."""

from __future__ import annotations

from job.contract import DriverExit


class StudyStopped(RuntimeError):
    """A trial showed that every trial would fail the same way; ``code`` is the CLI's exit."""

    def __init__(self, code: DriverExit | int, message: str) -> None:
        super().__init__(message)
        self.code = int(code)
