"""Expected failures and the exit codes they map to (docs/contract.md: exit codes)."""

from __future__ import annotations

from job.contract import ExitCode, Reason


class JobError(Exception):
    """An expected failure: one plain sentence for stderr and a documented exit code."""

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(JobError):
    """Bad configuration: never worth retrying."""

    exit_code = ExitCode.BAD_CONFIG


class DataError(JobError):
    """Data unavailable or invalid."""

    exit_code = ExitCode.NO_DATA


class DivergedError(JobError):
    """Training produced a non-finite loss."""

    exit_code = ExitCode.DIVERGED


class StoppedError(JobError):
    """Stopped by SIGTERM after the checkpoint was written; rerun to resume."""

    exit_code = ExitCode.STOPPED


class DeviceError(JobError):
    """The GPU failed (a CUDA error other than out-of-memory): CUDA is unusable for the rest of
    the process, so the run stops there and promotes nothing."""

    exit_code = ExitCode.DEVICE_FAILED


class ResourceError(JobError):
    """The machine ran out of something; ``reason`` says what (``disk`` or ``memory``)."""

    exit_code = ExitCode.RESOURCES

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason
