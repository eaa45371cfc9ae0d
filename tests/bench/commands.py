"""Running a bench command from the repository root, as the tests of ``bench/`` do."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from tests.conftest import REPO


def run_command(
    *cmd: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` from the repository root; its stdout and stderr captured as text."""
    return subprocess.run(
        list(cmd),
        cwd=REPO,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_module(
    module: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m module args…`` with this interpreter, as :func:`run_command`."""
    return run_command(sys.executable, "-m", module, *args, env=env, timeout=timeout)
