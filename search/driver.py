"""The search driver: Optuna trials in, job runs out, events back in.

Each worker thread repeatedly takes a trial from the study and hands it to a
:class:`~search.trial.TrialRunner`, which runs the job through a launcher and records the
result. The budget is the study's total of finished (COMPLETE or PRUNED) trials, so several
drivers, and reruns after a crash, share it. A heartbeat thread keeps this driver's running
trials alive in the storage; trials whose driver is gone are failed and queued again.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from job.contract import DriverExit
from search._optuna import quiet_experimental, trial_id
from search.errors import StudyStopped
from search.settings import Settings
from search.storage import Requeue, StorageUnavailable, scrub
from search.storage.retrying import BACKOFF_MAX
from search.study import FINISHED, open_study
from search.trial import DOES_NOT_FIT, TrialRunner

log = logging.getLogger("search")

__all__ = ["Driver", "Settings", "StudyStopped", "driver_id"]

_WAIT_FOR_BUDGET = 2.0
"""Seconds between looks at the study while other drivers' runs may still meet the budget."""

_ORPHAN_AFTER = 600.0
"""Seconds after which a RUNNING trial that no driver ever claimed (its driver died between
asking for it and labelling it) is failed."""


def driver_id() -> str:
    """``host:pid:start-time`` of this process; identifies it on its trials."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def _alive_here(ident: str) -> bool:
    """False when ``ident`` names a driver on this host that is no longer running."""
    host, _, rest = ident.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only its heartbeat can tell
    return _start_time(int(pid)) == started


class Driver:
    """Runs a study to its budget with ``settings.parallel`` worker threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.study, self.storage = open_study(
            settings.storage,
            settings.study_name,
            pruner=settings.pruner,
            sampler=settings.sampler,
            seed=settings.seed,
            heartbeat=settings.heartbeat,
            retries=settings.retries,
            retry_seconds=settings.storage_retry,
            first_params=settings.space.baseline(),
        )
        self.requeue = Requeue(settings.retries)
        self.id = driver_id()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._active: dict[int, int] = {}  # trial number -> trial id, for heartbeats
        self._error: StudyStopped | None = None
        self._failures_in_a_row = 0
        self.runner = TrialRunner(settings, self.study, self.storage, self._stopping, self.requeue)

    @property
    def stopping(self) -> bool:
        """True once the driver was asked to stop (or a trial stopped the study)."""
        return self._stopping.is_set()

    @property
    def storage_lost(self) -> bool:
        """True when the study's database stayed unreachable past ``--storage-retry``."""
        return isinstance(self._error, StorageUnavailable)

    # -- the study loop ---------------------------------------------------------------

    def run(self, on_trial: Callable[[FrozenTrial], None] | None = None) -> None:
        """Run trials until the study holds ``settings.trials`` finished ones; call
        ``on_trial`` with each trial this driver recorded.

        Raises :class:`StudyStopped` when a trial shows the study cannot succeed (bad
        configuration, data unavailable, a full disk, too many failures in a row) or the
        database stayed unreachable; the other running trials are stopped first.
        """
        self.settings.output.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                self._reap()
        except StudyStopped as exc:
            self._stop_study(exc)
            raise
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        workers = [
            threading.Thread(target=self._work, args=(slot, on_trial), name=f"worker-{slot}")
            for slot in range(max(1, self.settings.parallel))
        ]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop()
            for worker in workers:
                worker.join()
            raise
        finally:
            self._stopping.set()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop launching trials and stop the running ones (they are queued to run again)."""
        self._stopping.set()

    def finished(self) -> int:
        """How many trials of the study are COMPLETE or PRUNED."""
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def _stop_study(self, exc: StudyStopped) -> None:
        """Keep the first reason the study stopped and stop every worker."""
        with self._lock:
            self._error = self._error or exc
        self._stopping.set()

    def _work(self, slot: int, on_trial: Callable[[FrozenTrial], None] | None) -> None:
        gpus = self.settings.gpus
        gpu = gpus[slot % len(gpus)] if gpus else None
        try:
            while not self._stopping.is_set():
                trial = self._next_trial()
                if trial is None:
                    return
                frozen = self._run(trial, gpu)
                if frozen is not None:
                    self._count(frozen)
                    if on_trial is not None:
                        on_trial(frozen)
        except StudyStopped as exc:
            self._stop_study(exc)

    def _run(self, trial: optuna.Trial, gpu: str | None) -> FrozenTrial | None:
        """Run one trial; a bug in the driver fails that trial and the study goes on."""
        try:
            return self.runner.run(trial, gpu)
        except StudyStopped:
            raise
        except Exception as exc:
            log.exception("trial %d: the driver failed to run it", trial.number)
            reason = scrub(f"driver error: {type(exc).__name__}: {exc}", self.settings.storage)
            return self._fail(trial, reason)
        finally:
            with self._lock:
                self._active.pop(trial.number, None)

    def _fail(self, trial: optuna.Trial, reason: str) -> FrozenTrial | None:
        try:
            trial.set_user_attr("fail_reason", reason[:500])
            return self.study.tell(trial, state=TrialState.FAIL)
        except StudyStopped:
            raise
        except Exception:
            log.exception("trial %d: could not record the failure", trial.number)
            return None

    def _count(self, frozen: FrozenTrial) -> None:
        """Stop the study after too many failures in a row: something is broken. A trial
        too big for the machine's memory says nothing about the others, so it is not counted."""
        with self._lock:
            if frozen.state != TrialState.FAIL:
                self._failures_in_a_row = 0
                return
            if frozen.user_attrs.get("fail_reason") == DOES_NOT_FIT:
                return
            self._failures_in_a_row += 1
            if self._failures_in_a_row < self.settings.max_failures or self._error is not None:
                return
            self._error = StudyStopped(
                DriverExit.FAILURES,
                f"{self._failures_in_a_row} trials failed in a row (last: trial "
                f"{frozen.number}, {frozen.user_attrs.get('fail_reason', '?')}); see its "
                f"log {frozen.user_attrs.get('log', '')}.",
            )
            self._stopping.set()

    def _next_trial(self) -> optuna.Trial | None:
        """Ask for a trial while finished + running < budget; None once the budget is met."""
        while not self._stopping.is_set():
            with self._lock:
                self._reap()
                trials = self.study.get_trials(deepcopy=False)
                done = sum(t.state in FINISHED for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if done >= self.settings.trials:
                    return None
                if done + running < self.settings.trials:
                    with quiet_experimental():  # heartbeats come from our own thread
                        trial = self.study.ask()
                    trial.set_user_attr("driver", self.id)
                    self._active[trial.number] = trial_id(trial)
                    self.storage.record_heartbeat(trial_id(trial))
                    return trial
            self._stopping.wait(_WAIT_FOR_BUDGET)
        return None

    def _reap(self) -> None:
        """Fail (and queue again) running trials whose driver is gone.

        A trial is gone when its heartbeat is stale, when its driver ran on this host and is
        no longer running, or when no driver ever claimed it. Staleness is judged only once
        the database has been reachable for a whole grace period plus the longest wait
        between two attempts: after an outage, every driver's heartbeats are old, and each
        must get the chance to notice the database is back (its next attempt comes up to
        BACKOFF_MAX later) and beat again first.
        """
        settled = self.storage.grace_period + BACKOFF_MAX
        if time.monotonic() - self.storage.reachable_since >= settled:
            with quiet_experimental():
                fail_stale_trials(self.study)
        now = datetime.datetime.now()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get("driver")
            if owner == self.id:
                continue
            if owner:
                gone = not _alive_here(owner)
            else:
                started = t.datetime_start or now
                gone = (now - started).total_seconds() > _ORPHAN_AFTER
            if gone:
                self._requeue_running(t)

    def _requeue_running(self, trial: FrozenTrial) -> None:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if self.storage.set_trial_state_values(trial_id(trial), state=TrialState.FAIL):
                log.warning("trial %d: its driver is gone; queued again", trial.number)
                self.requeue(self.study, self.storage.get_trial(trial_id(trial)))

    def _beat(self) -> None:
        """Record a heartbeat for every running trial of this driver, every ``heartbeat`` s."""
        while not self._stopping.wait(self.settings.heartbeat):
            with self._lock:
                ids = list(self._active.values())
            for active_id in ids:
                try:
                    self.storage.record_heartbeat(active_id)
                except StorageUnavailable as exc:  # may be the first to notice: stop the study
                    self._stop_study(exc)
                    return
                except Exception:
                    log.debug("heartbeat of trial id %d failed", active_id, exc_info=True)
