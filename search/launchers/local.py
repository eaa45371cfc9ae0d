"""Run the job as a local process: ``python -m job`` in its own process group.

The process dies with the driver even when the driver is killed with SIGKILL: on Linux the
child asks the kernel for ``PR_SET_PDEATHSIG`` before it executes the job. With several slots,
each trial gets its share of the cores (:mod:`search.launchers.cores`): ``CPU_THREADS`` and,
where there are enough cores, an affinity mask of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from job.contract import JOB_LOG, VARIABLE_NAMES
from search.launchers.base import LogFileTail, TrialSpec
from search.launchers.cores import CorePool

_DRIVER_ONLY = frozenset({"CUDA_VISIBLE_DEVICES", "SEARCH_STORAGE"})
"""Variables of the driver's environment that a trial never inherits: the GPU pin is set per
trial, and the storage URL may hold a password."""

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent(parent: int, cpus: frozenset[int]) -> None:
    """Runs in the child between fork and exec: SIGKILL me when the driver's thread dies, and
    keep me on ``cpus`` (all of the driver's when empty)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the driver died before prctl took effect
        os._exit(137)
    if cpus:
        os.sched_setaffinity(0, cpus)


class LocalRun(LogFileTail):
    """A job process started by :class:`LocalLauncher`; ``ended`` runs once when it ended."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        log_path: Path,
        ended: Callable[[], None] = lambda: None,
    ) -> None:
        self.proc = proc
        self.log_path: Path | None = log_path
        self._ended: Callable[[], None] | None = ended

    def lines(self) -> Iterator[str]:
        """Yield stdout lines until the process closes its stdout."""
        assert self.proc.stdout is not None
        yield from self.proc.stdout

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the process group (the job checkpoints), SIGKILL it after ``grace`` s."""
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)

    def wait(self) -> int:
        """Wait for the process; return its exit code (128+N when killed by signal N)."""
        code = self.proc.wait()
        self._signal(signal.SIGKILL)  # leftovers in the group, e.g. data-loader workers
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        ended, self._ended = self._ended, None
        if ended is not None:  # the first wait frees the run's cores
            ended()
        return 128 - code if code < 0 else code

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class LocalLauncher:
    """Start the job as a child process of the driver; ``slots`` trials at once share the
    cores (one slot: the trial sizes itself)."""

    name = "local"

    def __init__(
        self,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        slots: int = 1,
        cold_start: bool = True,
    ) -> None:
        self.command = list(command or [sys.executable, "-m", "job"])
        self.cwd = cwd
        self.cores = CorePool(slots)
        self.cold_start = cold_start

    def start(self, spec: TrialSpec) -> LocalRun:
        """Start ``spec`` as a process; its stderr goes to ``<output_dir>/job.log``."""
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        # The trial's settings come from ``spec.env`` only, as for containers: job variables
        # exported in the driver's shell do not leak into trials.
        env = {k: v for k, v in os.environ.items() if k not in VARIABLE_NAMES | _DRIVER_ONLY}
        env.update(spec.env)
        env.update(
            {
                "OUTPUT_DIR": str(spec.output_dir),
                "DATA_DIR": str(spec.data_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = spec.gpu
        share = self.cores.take()
        if share is not None:
            env.setdefault("CPU_THREADS", str(share.threads))  # a --job-env CPU_THREADS wins
        cpus = share.cpus if share is not None else frozenset()
        log_path = spec.output_dir / JOB_LOG
        parent = os.getpid()
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    cwd=self.cwd,
                    text=True,
                    bufsize=1,
                    start_new_session=True,
                    preexec_fn=lambda: _die_with_parent(parent, cpus),
                )
        except BaseException:
            self.cores.give_back(share)
            raise
        return LocalRun(proc, log_path, lambda: self.cores.give_back(share))
