"""Run the job as a local process: ``python -m job`` in its own process group.

The process dies with the driver even when the driver is killed with SIGKILL: on Linux the
child asks the kernel for ``PR_SET_PDEATHSIG`` before it executes the job. With several slots,
each trial gets its share of the cores (:mod:`search.launchers.cores`): ``CPU_THREADS`` and,
where there are enough cores, an affinity mask of its own.

Unless ``cold_start``, a trial of the job itself is forked from a warm process that has
already imported it and PyTorch (:mod:`search.launchers.warm`), with the same environment,
process group, affinity and stdio as a cold one; it starts cold when no warm process can
take it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from job.contract import JOB_LOG, VARIABLE_NAMES
from search.gpus import placement_env
from search.launchers.base import LOST, LogFileTail, TrialSpec
from search.launchers.cores import CorePool, Share
from search.launchers.forkserver import die_with_parent
from search.launchers.warm import WarmPool, WarmProcess

_DRIVER_ONLY = frozenset({"CUDA_VISIBLE_DEVICES", "SEARCH_STORAGE"})
"""Variables of the driver's environment that a trial never inherits: the GPU pin is set per
trial, and the storage URL may hold a password."""

WARM_SAFE = hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform == "linux"
"""Whether this platform can fork warm trials (fork, descriptors over a Unix socket,
PDEATHSIG): elsewhere every trial starts cold."""


class LocalRun(LogFileTail):
    """A job process started by :class:`LocalLauncher`; ``ended`` runs once when it ended.
    ``warm_start`` tells whether it was forked from a warm process."""

    def __init__(
        self,
        proc: subprocess.Popen[str] | WarmProcess,
        log_path: Path,
        ended: Callable[[], None] = lambda: None,
    ) -> None:
        self.proc = proc
        self.log_path: Path | None = log_path
        self.warm_start = isinstance(proc, WarmProcess)
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
        """Wait for the process; return its exit code (128+N when killed by signal N, ``LOST``
        when the warm process it was forked from died under it)."""
        code = self.proc.wait()
        self._signal(signal.SIGKILL)  # leftovers in the group, e.g. data-loader workers
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        ended, self._ended = self._ended, None
        if ended is not None:  # the first wait frees the run's cores
            ended()
        if isinstance(self.proc, WarmProcess) and self.proc.lost:
            return LOST
        return 128 - code if code < 0 else code

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class LocalLauncher:
    """Start the job as a child process of the driver; ``slots`` trials at once share the
    cores (one slot: the trial sizes itself). A trial runs ``python -m module`` (the job);
    a ``command`` of its own instead, or ``cold_start``, starts every trial as a new
    process."""

    name = "local"

    def __init__(
        self,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        slots: int = 1,
        cold_start: bool = False,
        module: str = "job",
    ) -> None:
        self.command = list(command or [sys.executable, "-m", module])
        self.cwd = cwd
        self.cores = CorePool(slots)
        self.cold_start = cold_start
        warm = not cold_start and command is None and WARM_SAFE
        self.warm = WarmPool(slots, module) if warm else None
        if self.warm is not None:
            weakref.finalize(self, self.warm.close)

    def start(self, spec: TrialSpec) -> LocalRun:
        """Start ``spec`` as a process; its stderr goes to ``<output_dir>/job.log``."""
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        share = self.cores.take()
        env = self._env(spec, share)
        cpus = share.cpus if share is not None else frozenset()
        log_path = spec.output_dir / JOB_LOG
        try:
            with open(log_path, "ab") as log:
                proc = self._warm(env, cpus, log) or self._cold(env, cpus, log)
        except BaseException:
            self.cores.give_back(share)
            raise
        return LocalRun(proc, log_path, lambda: self.cores.give_back(share))

    def close(self) -> None:
        """End the warm processes (they also end with the driver)."""
        if self.warm is not None:
            self.warm.close()

    def _env(self, spec: TrialSpec, share: Share | None) -> dict[str, str]:
        """The trial's environment, cold or warm: the driver's less every job variable and
        driver-only one, then the trial's variables, its folders, its device (its GPU, or
        none) and its share's threads."""
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
        # The trial sees its own GPU only, or none: with no GPU, CUDA must not find one.
        env["CUDA_VISIBLE_DEVICES"] = "" if spec.gpu is None else spec.gpu
        env.update(placement_env(spec.gpu))
        if share is not None:
            env.setdefault("CPU_THREADS", str(share.threads))  # a --job-env CPU_THREADS wins
        return env

    def _warm(
        self, env: dict[str, str], cpus: frozenset[int], log: IO[bytes]
    ) -> WarmProcess | None:
        if self.warm is None:
            return None
        return self.warm.start(env, self.cwd, cpus, log.fileno())

    def _cold(
        self, env: dict[str, str], cpus: frozenset[int], log: IO[bytes]
    ) -> subprocess.Popen[str]:
        parent = os.getpid()
        return subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=self.cwd,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(parent, cpus),
        )
