"""(c) Whole-job wall time: both pipelines as real subprocesses from a cold start.

"Cold" means nothing prepared: the job gets a fresh DATA_DIR (so it copies, verifies and
decodes the archive) and a fresh OUTPUT_DIR; the tutorial extracts the archive into a fresh
folder. The archive file itself is read once beforehand so that neither side pays for the
operating system's first read from disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.contract import HISTORY_JSON, METRICS_JSON, VARIABLE_NAMES

REPO = Path(__file__).resolve().parent.parent


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


@dataclass(frozen=True)
class RunResult:
    """What one subprocess run produced."""

    seconds: float
    val_acc: float
    details: dict[str, Any]


def parse_configs(text: str) -> list[WallConfig]:
    """Parse ``WIDTH:TRAIN:TEST:EPOCHS[,…]``, e.g. ``1:2000:1000:1,0.25:5000:2000:2``."""
    configs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            width, train, test, epochs = item.split(":")
            configs.append(WallConfig(float(width), int(train), int(test), int(epochs)))
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
) -> RunResult:
    """Run ``python -m job`` on ``archive`` with a fresh OUTPUT_DIR and time it.

    DATA_DIR is fresh too (a cold start) unless ``data_dir`` names a prepared one.
    """
    _fresh(workdir / "output")  # a leftover checkpoint there would make the job resume
    if data_dir is None:
        _fresh(workdir / "data")
    env = clean_env()
    env.update(
        {
            "DATA_URL": archive.resolve().as_uri(),
            "DATA_DIR": str(data_dir or workdir / "data"),
            "OUTPUT_DIR": str(workdir / "output"),
            "MODEL_WIDTH": f"{cfg.width:g}",
            "TRAIN_LIMIT": str(cfg.train),
            "TEST_LIMIT": str(cfg.test),
            "EPOCHS": str(cfg.epochs),
            "BATCH_SIZE": str(cfg.batch_size),
            **(extra_env or {}),
        }
    )
    seconds, stdout = _timed([sys.executable, "-m", "job"], env, workdir / "job")
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    done = next(e for e in events if e.get("event") == "done")
    output = workdir / "output"
    metrics = json.loads((output / METRICS_JSON).read_text())
    history = json.loads((output / HISTORY_JSON).read_text())
    details = {"metrics": metrics, "history": [_without_lrs(h) for h in history]}
    return RunResult(seconds, float(done["val_acc"]), details)


def _without_lrs(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "lrs"}


def run_tutorial(archive: Path, cfg: WallConfig, workdir: Path) -> RunResult:
    """Run ``python -m bench.tutorial`` on ``archive``, extracting into a fresh folder."""
    _fresh(workdir / "data")
    result = workdir / "result.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench.tutorial",
        "--archive",
        str(archive.resolve()),
        "--data-dir",
        str(workdir / "data"),
        "--width",
        f"{cfg.width:g}",
        "--train-limit",
        str(cfg.train),
        "--test-limit",
        str(cfg.test),
        "--epochs",
        str(cfg.epochs),
        "--batch-size",
        str(cfg.batch_size),
        "--result",
        str(result),
    ]
    seconds, _ = _timed(cmd, clean_env(), workdir / "tutorial")
    details = json.loads(result.read_text())
    details.pop("history", None)
    return RunResult(seconds, float(details["val_acc"]), details)


def _timed(cmd: list[str], env: dict[str, str], log_stem: Path) -> tuple[float, str]:
    """Run ``cmd`` from the repository root; return (wall seconds, stdout). Logs are kept."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    log_stem.with_suffix(".stdout").write_text(proc.stdout)
    log_stem.with_suffix(".stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}:\n{tail}")
    return seconds, proc.stdout


def _fresh(path: Path) -> None:
    # Runs must start cold even when a kept --workdir is reused.
    shutil.rmtree(path, ignore_errors=True)


def clean_env() -> dict[str, str]:
    """This process's environment without any job variable: runs start from the recipe."""
    return {k: v for k, v in os.environ.items() if k not in VARIABLE_NAMES}
