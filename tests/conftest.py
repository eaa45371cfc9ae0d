"""Shared fixtures: generated CIFAR-shaped archives and a real HTTP server; the job runner of
:mod:`testkit.jobrun`, re-exported so test files import it from here.

Tests that need a component this machine may lack (the real CIFAR archive, Docker,
PostgreSQL) call :func:`need`: it skips with the reason on a user's machine and fails
when ``RESNET_JOB_REQUIRE_ALL=1`` (set by ``.ci/run``), so CI never passes by skipping.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.paths import SHARED_ARCHIVE as REAL_CIFAR
from job.contract import OUTPUTS
from testkit import REPO
from testkit.jobrun import JobResult, job_env, run_job, start_job
from tests.archives import make_archive


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold a ``slow`` test first, each file's tests kept in their order: `make
    test` runs the files on two workers (`pytest -n 2 --dist loadfile`), which take the files in
    this order, so the longest ones start at once instead of ending the run alone."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


REQUIRE_ALL = os.environ.get("RESNET_JOB_REQUIRE_ALL") == "1"
__all__ = [
    "OUTPUTS",
    "REAL_CIFAR",
    "REPO",
    "JobResult",
    "job_env",
    "need",
    "run_job",
    "start_job",
]


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
