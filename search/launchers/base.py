"""The launcher protocol: how the driver starts a job run and talks to it.

A launcher knows how to run the training job somewhere (a process, a container, a Kubernetes
Job) and nothing of Optuna. The driver gives it a trial's environment and reads the job's
stdout lines back; the same JSON-line parser serves every launcher.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LOST = -1
"""Exit code reported when the run disappeared (container removed, pod evicted or deleted)."""


@dataclass(frozen=True)
class TrialSpec:
    """What a launcher needs to start one run of the job.

    ``env`` holds the job variables; ``OUTPUT_DIR`` and ``DATA_DIR`` in it are set by the
    launcher to where the run sees ``output_dir`` and ``data_dir``. ``gpu`` is the device
    id to pin the run to (``None``: no GPU). ``labels`` name the study and the trial.
    """

    name: str
    env: Mapping[str, str]
    output_dir: Path
    data_dir: Path
    gpu: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class Run(Protocol):
    """One started run of the job."""

    log_path: Path | None
    """Where the run's stderr (human-readable progress) is kept, when it is kept locally."""

    def lines(self) -> Iterator[str]:
        """Yield the job's stdout lines until the stream ends."""

    def stop(self, grace: float = 30.0) -> None:
        """Ask the job to stop (SIGTERM, so it can checkpoint); force it after ``grace`` s."""

    def wait(self) -> int:
        """Wait for the run to end; return its exit code, or ``LOST`` if it disappeared."""

    def stderr_tail(self) -> str:
        """The last non-empty line the job wrote on stderr ("" when there is none)."""


class Launcher(Protocol):
    """Starts runs of the job."""

    name: str

    def start(self, spec: TrialSpec) -> Run:
        """Start one run of the job as described by ``spec``."""


class LogFileTail:
    """``stderr_tail`` for a run whose stderr is kept in the file ``log_path``."""

    log_path: Path | None

    def stderr_tail(self) -> str:
        """The last non-empty line of the run's log file: a process's stderr as it writes
        it, a container's once it ended ("" when there is none)."""
        try:
            return last_line(self.log_path.read_text(errors="replace")) if self.log_path else ""
        except OSError:
            return ""


def last_line(text: str) -> str:
    """The last non-empty line of ``text``."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def env_items(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Sorted (name, value) pairs, so every launcher passes variables in one stable order."""
    return sorted(env.items())
