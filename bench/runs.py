"""No figure: what the rows share to start the search and read its files: the job's data
variables, the ``python -m search run`` command, a logged subprocess, stopping one that
overruns, and the JSON and ``trials.csv`` files a run leaves."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.paths import REPO


def data_vars(archive: Path, data_dir: Path) -> dict[str, str]:
    """The job's ``DATA_URL`` (``archive`` as a file:// URL) and ``DATA_DIR``, both absolute."""
    return {"DATA_URL": archive.resolve().as_uri(), "DATA_DIR": str(data_dir.resolve())}


def search_command(trials: int, job_env: Mapping[str, str], *options: str) -> list[str]:
    """``python -m search run --trials N OPTIONS…`` with one ``--job-env`` per job variable."""
    # No confirmation phase: the rows built on this measure the study alone.
    cmd = [sys.executable, "-m", "search", "run", "--trials", str(trials), "--confirm", "0"]
    cmd += options
    for key, value in job_env.items():
        cmd += ["--job-env", f"{key}={value}"]
    return cmd


def run_logged(
    cmd: list[str],
    env: dict[str, str],
    log_stem: Path,
    *,
    what: str | None = None,
    tail: int = 15,
) -> tuple[float, str]:
    """Run ``cmd`` from the repository root; return (wall seconds, stdout). Logs are kept.

    Its stdout and stderr are written beside ``log_stem`` (``.stdout``, ``.stderr``); a non-zero
    exit raises RuntimeError naming ``what`` (default: the command's start) with the last
    ``tail`` lines of its stderr.
    """
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    log_stem.with_suffix(".stdout").write_text(proc.stdout)
    log_stem.with_suffix(".stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        lines = "\n".join(proc.stderr.strip().splitlines()[-tail:])
        raise RuntimeError(f"{what or ' '.join(cmd[:3])} exited {proc.returncode}:\n{lines}")
    return seconds, proc.stdout


def wait_or_stop(
    proc: subprocess.Popen[bytes], seconds: float, grace: float, *, group: bool = False
) -> bool:
    """Wait up to ``seconds``; then SIGTERM, ``grace`` s, SIGKILL. True when it was stopped.

    ``group``: signal the process group ``proc`` leads (started with ``start_new_session``),
    so that what it started stops with it.
    """
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    return True


def read_trials(path: Path) -> list[dict[str, str]]:
    """The rows of a search's ``trials.csv`` (every value as text; empty when missing)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def decode(archive: Path, data_dir: Path) -> Any:
    """Decode ``archive`` into the job's cache in ``data_dir`` (as the job would); the data set."""
    from job.config import from_env
    from job.data import load_dataset

    return load_dataset(from_env(data_vars(archive, data_dir)))
