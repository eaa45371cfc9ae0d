"""Expected failures and the exit codes they map to (DESIGN.md: exit codes)."""

from __future__ import annotations


class JobError(Exception):
    """An expected failure: one plain sentence for stderr and a documented exit code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(JobError):
    """Bad configuration: never worth retrying."""

    exit_code = 2


class DataError(JobError):
    """Data unavailable or invalid."""

    exit_code = 3


class DivergedError(JobError):
    """Training produced a non-finite loss."""

    exit_code = 4


class StoppedError(JobError):
    """Stopped by SIGTERM after the checkpoint was written; rerun to resume."""

    exit_code = 143
