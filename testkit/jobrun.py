"""Starting the real job, ``python -m job``, as a subprocess: the one way tests and benches do it.

:func:`job_env` is a clean environment for a quick CPU run, :func:`start_job` starts the job
(piped, text), :func:`run_job` runs it to the end and parses its events (:class:`JobResult`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from job.contract import VARIABLE_NAMES
from testkit import REPO

JOB = (sys.executable, "-m", "job")
"""The job's command line, with this interpreter."""

_Stream = int | IO[Any] | None


def clean_env(environ: Mapping[str, str] = os.environ, /, **extra: object) -> dict[str, str]:
    """``environ`` without any job variable (a run starts from the recipe), plus ``extra``."""
    env = {k: v for k, v in environ.items() if k not in VARIABLE_NAMES}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def job_env(tmp: Path, **settings: object) -> dict[str, str]:
    """A clean environment for a quick CPU run in ``tmp`` (``tmp/data``, ``tmp/output``);
    ``settings`` add to or override these."""
    quick: dict[str, object] = {
        "DATA_DIR": tmp / "data",
        "OUTPUT_DIR": tmp / "output",
        "DEVICE": "cpu",
        "EPOCHS": 2,
        "BATCH_SIZE": 64,
        "MODEL_WIDTH": 0.125,
        "PYTHONUNBUFFERED": 1,
        # Tests start many jobs at once on a small machine; one BLAS thread each keeps them
        # from spinning against each other (results do not depend on it).
        "OMP_NUM_THREADS": 1,
    }
    return clean_env(**{**quick, **settings})


def start_job(
    env: Mapping[str, str] | None = None,
    *args: str,
    prefix: Sequence[str] = (),
    stdout: _Stream = subprocess.PIPE,
    stderr: _Stream = subprocess.PIPE,
    cwd: Path = REPO,
) -> subprocess.Popen[str]:
    """Start ``prefix… python -m job args…`` from the repository (text, stdout and stderr
    piped unless given); ``env`` None: this process's environment."""
    return subprocess.Popen(
        [*prefix, *JOB, *args],
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


@dataclass(frozen=True)
class JobResult:
    """What a finished ``python -m job`` left behind."""

    code: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str
    seconds: float = 0.0
    """Wall seconds from start to exit."""

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events named ``kind``, in order."""
        return [e for e in self.events if e.get("event") == kind]


def run_job(
    env: Mapping[str, str] | None = None,
    *args: str,
    timeout: float = 600,
    prefix: Sequence[str] = (),
    strict: bool = True,
    cwd: Path = REPO,
) -> JobResult:
    """Run ``python -m job`` to its end (from ``cwd``) and parse its stdout as events
    (:func:`events`)."""
    started = time.perf_counter()
    proc = start_job(env, *args, prefix=prefix, cwd=cwd)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    seconds = time.perf_counter() - started
    return JobResult(proc.returncode, events(stdout, strict), stdout, stderr, seconds)


def events(stdout: str, strict: bool = False) -> list[dict[str, Any]]:
    """The JSON events in ``stdout``, one a line; ``strict``: every non-empty line must be one
    (the job prints nothing else there), else other lines are passed over."""
    found = []
    for line in filter(str.strip, stdout.splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            if strict:
                raise
            continue
        if isinstance(event, dict):
            found.append(event)
    return found
