"""Shared fixtures: generated CIFAR-shaped archives, a real HTTP server, and a job runner.

Tests that need a component this machine may lack (the real CIFAR archive, Docker,
PostgreSQL) call :func:`need`: it skips with the reason on a user's machine and fails
when ``RESNET_JOB_REQUIRE_ALL=1`` (set by ``.ci/run``), so CI never passes by skipping.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.paths import REPO
from bench.paths import SHARED_ARCHIVE as REAL_CIFAR
from job.contract import OUTPUTS, VARIABLE_NAMES
from tests.archives import make_archive

REQUIRE_ALL = os.environ.get("RESNET_JOB_REQUIRE_ALL") == "1"
__all__ = ["OUTPUTS", "REAL_CIFAR", "JobResult", "job_env", "need", "run_job", "start_job"]


def need(available: bool, reason: str) -> None:
    """Skip (or, under RESNET_JOB_REQUIRE_ALL=1, fail) when a component is missing."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required component missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_cifar() -> Path:
    """The real CIFAR-10 archive (fast.ai layout), when this machine has it."""
    need(REAL_CIFAR.is_file(), f"real CIFAR-10 archive not found at {REAL_CIFAR}")
    return REAL_CIFAR


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small learnable archives in both supported layouts: {"fastai": path, "python": path}."""
    root = tmp_path_factory.mktemp("archives")
    return {
        "fastai": make_archive(root / "cifar10.tgz", "fastai", n_train=400, n_test=200),
        "python": make_archive(root / "cifar-10-python.tar.gz", "python", n_train=400, n_test=200),
    }


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator:
    """Start a real HTTP server on 127.0.0.1; call it with a folder, get its base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path, handler: type | None = None) -> str:
        cls = handler or _QuietHandler
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(cls, directory=str(directory))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class JobResult:
    """What a finished `python -m job` subprocess left behind."""

    code: int
    events: list[dict]
    stdout: str
    stderr: str

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]


def job_env(tmp: Path, **settings: object) -> dict[str, str]:
    """A clean environment for a quick CPU job run in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLE_NAMES}
    env.update(
        {
            "DATA_DIR": str(tmp / "data"),
            "OUTPUT_DIR": str(tmp / "output"),
            "DEVICE": "cpu",
            "EPOCHS": "2",
            "BATCH_SIZE": "64",
            "MODEL_WIDTH": "0.125",
            "PYTHONUNBUFFERED": "1",
            # Tests start many jobs at once on a small machine; one BLAS thread each keeps
            # them from spinning against each other (results do not depend on it).
            "OMP_NUM_THREADS": "1",
        }
    )
    env.update({k: str(v) for k, v in settings.items()})
    return env


def start_job(env: Mapping[str, str]) -> subprocess.Popen:
    """Start `python -m job` as a real subprocess with piped, text stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "job"],
        env=dict(env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_job(env: Mapping[str, str], timeout: float = 600) -> JobResult:
    """Run `python -m job` as a real subprocess and parse its stdout events."""
    proc = subprocess.run(
        [sys.executable, "-m", "job"],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return JobResult(proc.returncode, events, proc.stdout, proc.stderr)
