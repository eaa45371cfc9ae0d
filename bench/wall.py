"""Row (c), whole-job wall time: both pipelines as real subprocesses, cold and then warm.

Cold: nothing prepared (the job gets a fresh DATA_DIR and OUTPUT_DIR; the tutorial extracts the
archive into a fresh folder). Warm: the repeat run right after, as in a search (the job on the
decoded cache its cold run left; the tutorial on the PNGs its cold run extracted).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runs import data_vars, run_logged
from job.contract import HISTORY_JSON, METRICS_JSON
from testkit.jobrun import JOB, clean_env, events


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
    env = clean_env()
    env.update(
        {
            **data_vars(archive, data),
            "OUTPUT_DIR": str(output),
            **cfg.job_vars(),
            "BATCH_SIZE": str(cfg.batch_size),
            **(extra_env or {}),
        }
    )
    seconds, stdout = run_logged(list(JOB), env, workdir / f"job{tag}")
    if warm and _decoded_caches(data) != caches:
        raise RuntimeError(f"the warm job rebuilt its decoded cache in {data}; it was not warm")
    done = next(e for e in events(stdout) if e.get("event") == "done")
    metrics = json.loads((output / METRICS_JSON).read_text())
    history = json.loads((output / HISTORY_JSON).read_text())
    details = {"metrics": metrics, "history": [_without_lrs(h) for h in history]}
    return RunResult(seconds, float(done["val_acc"]), details)


def _decoded_caches(data_dir: Path) -> dict[str, int]:
    # The job's decoded cache is the only .npz it writes in DATA_DIR (job/data.py); name →
    # modification time (ns), so a rebuilt cache shows as a change.
    return {p.name: p.stat().st_mtime_ns for p in data_dir.glob("*.npz")}


def _without_lrs(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "lrs"}


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
