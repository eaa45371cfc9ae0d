"""Champion promotion: keep the best model of repeated runs (the retraining CronJob) in one place.

PROMOTE_DIR/champion is a symbolic link to PROMOTE_DIR/runs/<run id>/. A better run copies its
files into a new folder, then swaps the link with one rename, under a file lock: readers see
the old champion or the new one, never a mix, and two runs promoting at once take turns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from job.contract import METRICS_JSON, PROMOTED
from job.events import emit, log
from job.files import write_json


def champion_val_acc(promote_dir: Path) -> float | None:
    """The current champion's val_acc, or None when there is no (readable) champion."""
    try:
        metrics = json.loads((promote_dir / "champion" / METRICS_JSON).read_text())
        return float(metrics["val_acc"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def promote(
    output_dir: Path,
    promote_dir: Path,
    val_acc: float,
    run_id: str,
    record: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Promote ``output_dir``'s files if ``val_acc`` beats the champion; return the decision.

    Deciding, recording the decision (``record`` writes it into the run's metrics.json, which
    is then copied with the model) and swapping the link form one critical section.
    """
    promote_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(promote_dir / ".promote.lock")):
        champion = champion_val_acc(promote_dir)
        decision = {
            "promoted": champion is None or val_acc > champion,
            "val_acc": val_acc,
            "champion_val_acc": champion,
            "champion": str(promote_dir / "champion"),
        }
        record(decision)
        if decision["promoted"]:
            try:
                _install(output_dir, promote_dir, run_id)
            except BaseException:
                # The run's metrics.json must not claim a promotion that did not happen; the
                # original error (a full PROMOTE_DIR, say) is what the caller reports.
                with contextlib.suppress(OSError):
                    record({**decision, "promoted": False})
                raise
        return decision


def promote_run(output_dir: Path, promote_dir: Path, metrics: dict[str, Any]) -> None:
    """Promote the finished run in ``output_dir`` if it beats PROMOTE_DIR's champion.

    The decision is added to ``metrics`` as ``promotion`` and metrics.json rewritten with it
    (before the files are copied, see :func:`promote`), then reported as a ``promote`` event.
    """
    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}"

    def record(decision: dict[str, Any]) -> None:
        metrics["promotion"] = decision
        write_json(output_dir / METRICS_JSON, metrics)

    decision = promote(output_dir, promote_dir, metrics["val_acc"], run_id, record)
    emit("promote", **decision)
    log(
        f"promotion: {'promoted' if decision['promoted'] else 'kept the champion'} "
        f"(this run {decision['val_acc']:.4f}, champion {decision['champion_val_acc']})"
    )


def _install(output_dir: Path, promote_dir: Path, run_id: str) -> None:
    runs = promote_dir / "runs"
    runs.mkdir(exist_ok=True)
    staging = runs / f".{run_id}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name in PROMOTED:
            if (output_dir / name).is_file():
                shutil.copy2(output_dir / name, staging / name)
        os.replace(staging, runs / run_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a half-copied run is never left behind
        raise
    # Build the new link beside the old one, then rename over it: an atomic swap.
    link = promote_dir / f".champion.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("runs") / run_id)
    os.replace(link, promote_dir / "champion")
