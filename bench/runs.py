"""Row (c), whole-job wall time cold and warm, and what every row shares to run the job, the
tutorial and the search (docs/benchmarks.md, "What each figure measures", says how)."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from bench.paths import REPO
from job.contract import HISTORY_JSON, METRICS_JSON
from testkit.jobrun import JOB, clean_env, events

_P = ParamSpec("_P")
_T = TypeVar("_T")


def timed(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> tuple[_T, float]:
    """``fn(*args, **kwargs)``, and the wall seconds it took."""
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start


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
    cmd: list[str], env: dict[str, str], log_stem: Path, *, what: str | None = None, tail: int = 15
) -> tuple[float, str]:
    """Run ``cmd`` from the repository root; return (wall seconds, stdout). Logs are kept.

    Its stdout and stderr are written beside ``log_stem`` (``.stdout``, ``.stderr``); a non-zero
    exit raises RuntimeError naming ``what`` (default: the command's start) with the last
    ``tail`` lines of its stderr.
    """
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    run = subprocess.run
    proc, seconds = timed(run, cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
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
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=seconds)
        return False
    send = functools.partial(os.killpg, proc.pid) if group else proc.send_signal
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):  # gone already: the wait reaps it
            send(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            break
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


@dataclass(frozen=True)
class WallConfig:
    """One small configuration run by both: model width, subset sizes, epochs."""

    width: float
    train: int
    test: int
    epochs: int
    batch_size: int = 400  # the tutorial's and the job's default

    @property
    def label(self) -> str:
        """A short human label, e.g. ``width 1, 2,000/1,000, 1 ep``."""
        train = f"{self.train:,}" if self.train else "all"
        test = f"{self.test:,}" if self.test else "all"
        batch = f", batch {self.batch_size}" if self.batch_size != 400 else ""
        return f"width {self.width:g}, {train}/{test} images, {self.epochs} ep{batch}"

    @property
    def slug(self) -> str:
        """A file-name-safe identifier of the configuration."""
        return f"w{self.width:g}-{self.train}-{self.test}-e{self.epochs}"

    def job_vars(self) -> dict[str, str]:
        """The job variables of this configuration (``BATCH_SIZE`` aside)."""
        return {
            "MODEL_WIDTH": f"{self.width:g}",
            "TRAIN_LIMIT": str(self.train),
            "TEST_LIMIT": str(self.test),
            "EPOCHS": str(self.epochs),
        }


@dataclass(frozen=True)
class RunResult:
    """What one subprocess run produced."""

    seconds: float
    val_acc: float
    details: dict[str, Any]


def parse_configs(text: str, batch_size: int = WallConfig.batch_size) -> list[WallConfig]:
    """Parse ``WIDTH:TRAIN:TEST:EPOCHS[,…]``, e.g. ``1:2000:1000:1,0.25:5000:2000:2``."""
    configs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            width, train, test, epochs = item.split(":")
            configs.append(WallConfig(float(width), int(train), int(test), int(epochs), batch_size))
        except ValueError:
            raise ValueError(f"bad config {item!r}: expected WIDTH:TRAIN:TEST:EPOCHS") from None
    return configs


def warm_file(path: Path) -> None:
    """Read ``path`` once so that both sides find it in the page cache."""
    with path.open("rb") as f:
        while f.read(1 << 22):
            pass


def run_job(
    archive: Path,
    cfg: WallConfig,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    data_dir: Path | None = None,
    warm: bool = False,
) -> RunResult:
    """Run ``python -m job`` on ``archive`` with a fresh OUTPUT_DIR and time it.

    DATA_DIR (``data_dir``, default ``workdir/data``) is emptied first — a cold start —
    unless ``data_dir`` names a prepared one or ``warm`` is set. ``warm`` is the repeat run:
    it requires the decoded cache a cold run left in DATA_DIR, fails if the run rebuilt it,
    and keeps its output and logs apart (``output-warm``, ``job-warm.*``).
    """
    data = data_dir or workdir / "data"
    tag = "-warm" if warm else ""
    output = workdir / f"output{tag}"
    _fresh(output)  # a leftover checkpoint there would make the job resume
    if data_dir is None and not warm:
        _fresh(data)
    caches = _decoded_caches(data)
    if warm and not caches:
        raise RuntimeError(f"no decoded cache in {data} for a warm run; run the job cold first")
    env = clean_env() | data_vars(archive, data) | cfg.job_vars() | {"OUTPUT_DIR": str(output)}
    env |= {"BATCH_SIZE": str(cfg.batch_size), **(extra_env or {})}
    seconds, stdout = run_logged(list(JOB), env, workdir / f"job{tag}")
    if warm and _decoded_caches(data) != caches:
        raise RuntimeError(f"the warm job rebuilt its decoded cache in {data}; it was not warm")
    done = next(e for e in events(stdout) if e.get("event") == "done")
    metrics = json.loads((output / METRICS_JSON).read_text())
    history = json.loads((output / HISTORY_JSON).read_text())
    # Each epoch's learning rates (one a batch) are left out: they would swamp the JSON.
    history = [{k: v for k, v in h.items() if k != "lrs"} for h in history]
    return RunResult(seconds, float(done["val_acc"]), {"metrics": metrics, "history": history})


def _decoded_caches(data_dir: Path) -> dict[str, int]:
    # The job's decoded cache is the only .npz it writes in DATA_DIR (job/data.py); name →
    # modification time (ns), so a rebuilt cache shows as a change.
    return {p.name: p.stat().st_mtime_ns for p in data_dir.glob("*.npz")}


def run_tutorial(archive: Path, cfg: WallConfig, workdir: Path, warm: bool = False) -> RunResult:
    """Run ``python -m bench.tutorial`` on ``archive`` in ``workdir/data`` and time it.

    Cold: it extracts into a fresh folder. ``warm``: the repeat run on the folder a cold run
    extracted (``--reuse-extracted``); it fails if the tutorial had to extract after all.
    """
    data = workdir / "data"
    tag = "-warm" if warm else ""
    if not warm:
        _fresh(data)
    result = workdir / f"result{tag}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.tutorial", "--archive", str(archive.resolve())]
    cmd += ["--data-dir", str(data), "--width", f"{cfg.width:g}", "--train-limit", str(cfg.train)]
    cmd += ["--test-limit", str(cfg.test), "--epochs", str(cfg.epochs), "--result", str(result)]
    cmd += ["--batch-size", str(cfg.batch_size), *(["--reuse-extracted"] if warm else [])]
    seconds, _ = run_logged(cmd, clean_env(), workdir / f"tutorial{tag}")
    details = json.loads(result.read_text())
    details.pop("history", None)
    if warm and not details.get("reused_extraction"):
        raise RuntimeError(f"the warm tutorial found no completed extraction in {data}")
    return RunResult(seconds, float(details["val_acc"]), details)


def _fresh(path: Path) -> None:
    # Runs must start cold even when a kept --workdir is reused.
    shutil.rmtree(path, ignore_errors=True)
