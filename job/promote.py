"""Champion promotion: keep the best model of repeated runs (the retraining CronJob) in one place.

PROMOTE_DIR/champion is a symbolic link to PROMOTE_DIR/runs/<run id>/. A run that beats the
champion copies its files into a new folder, then swaps the link with one rename, under a file
lock: readers see the old champion or the new one, never a mix, and two runs promoting at once
take turns.

"Beats" is judged fairly: the champion's model is evaluated on this run's test split with this
run's code (:mod:`job.champion`), and the run replaces it only when its val_acc exceeds that
figure by more than PROMOTE_MARGIN (a seed's noise, docs/contract.md). A champion that cannot be
loaded or evaluated is no champion: the run is promoted, and the decision says why. A champion
of other classes is another task's: it is kept, and the decision says why. A GPU that fails
while the champion is evaluated is neither: the judge raises :class:`job.errors.DeviceError`
(exit 6), which leaves the critical section before anything is recorded or installed.
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

from job.champion import ChampionJudge, OtherTask, UnusableChampion
from job.contract import METRICS_JSON, PROMOTED
from job.events import emit, log
from job.files import write_json

CHAMPION = "champion"
"""The link in PROMOTE_DIR to the champion's folder under ``runs/``."""


def recorded_val_acc(promote_dir: Path) -> float | None:
    """The val_acc the champion recorded on its own test split; None when unreadable."""
    try:
        metrics = json.loads((promote_dir / CHAMPION / METRICS_JSON).read_text())
        return float(metrics["val_acc"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def decide(
    promote_dir: Path, val_acc: float, margin: float, judge: ChampionJudge
) -> dict[str, Any]:
    """The decision for a run of ``val_acc``: the champion judged on this run's test split."""
    champion = promote_dir / CHAMPION
    decision: dict[str, Any] = {
        "promoted": True,
        "val_acc": val_acc,
        "champion_val_acc": None,
        "champion_recorded_val_acc": None,
        "margin": margin,
        "reason": "",
        "champion": str(champion),
    }
    if not champion.is_symlink() and not champion.exists():
        decision["reason"] = "there is no champion yet"
        return decision
    decision["champion_recorded_val_acc"] = recorded_val_acc(promote_dir)
    try:
        if not champion.is_dir():
            raise UnusableChampion(f"its folder {os.readlink(champion)} is missing")
        rival = judge(champion)
    except UnusableChampion as exc:
        decision["reason"] = f"the champion cannot be evaluated: {exc}; promoted in its place"
        return decision
    except OtherTask as exc:
        decision["promoted"] = False
        decision["reason"] = (
            f"the champion is another task's: {exc}; it is kept — give this data its own "
            f"PROMOTE_DIR, or remove {champion} to replace it"
        )
        return decision
    decision["champion_val_acc"] = rival
    decision["promoted"] = val_acc > rival + margin
    verb = "beats" if decision["promoted"] else "does not beat"
    decision["reason"] = (
        f"{val_acc:.4f} {verb} the champion's {rival:.4f} on this run's test split "
        f"by more than the margin {margin:g}"
    )
    return decision


def promote(
    output_dir: Path,
    promote_dir: Path,
    run_id: str,
    decide_now: Callable[[], dict[str, Any]],
    record: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Promote ``output_dir``'s files if ``decide_now()`` says so; return the decision.

    Deciding (the champion's evaluation included), recording the decision (``record`` writes
    it into the run's metrics.json, which is then copied with the model) and swapping the link
    form one critical section.
    """
    promote_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(promote_dir / ".promote.lock")):
        decision = decide_now()
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


def promote_run(
    output_dir: Path,
    promote_dir: Path,
    metrics: dict[str, Any],
    margin: float,
    judge: ChampionJudge,
) -> None:
    """Promote the finished run in ``output_dir`` if it beats PROMOTE_DIR's champion, as
    ``judge`` measures the champion, by more than ``margin``.

    The decision is added to ``metrics`` as ``promotion`` and metrics.json rewritten with it
    (before the files are copied, see :func:`promote`), then reported as a ``promote`` event.
    """
    run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"

    def record(decision: dict[str, Any]) -> None:
        metrics["promotion"] = decision
        write_json(output_dir / METRICS_JSON, metrics)

    decision = promote(
        output_dir,
        promote_dir,
        run_id,
        lambda: decide(promote_dir, metrics["val_acc"], margin, judge),
        record,
    )
    emit("promote", **decision)
    outcome = "promoted" if decision["promoted"] else "kept the champion"
    log(f"promotion: {outcome}: {decision['reason']}.")


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
    os.replace(link, promote_dir / CHAMPION)
