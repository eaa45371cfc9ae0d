"""The search driver: Optuna trials in, job runs out, events back in.

Each worker thread repeatedly takes a trial from the study and hands it to a
:class:`~search.trial.TrialRunner`, which runs the job through a launcher and records the
result. The budget is the study's total of finished (COMPLETE or PRUNED) trials, so several
drivers, and reruns after a crash, share it. A heartbeat thread keeps this driver's running
trials alive in the storage; trials whose driver is gone are failed and queued again.

The driver receives its study opened (:func:`search.study.open_study`); it opens nothing.
Once the budget is met, the confirmation race (``settings.confirm`` > 0) runs the same way,
round by round: the plan (:mod:`search.study.confirmation`) queues each missing run of the
round as a WAITING trial of the sibling study, the workers take them one at a time (a
WAITING → RUNNING change only one driver can make), and once none is queued or running the
next round is planned; so each run is executed once however many drivers share the phase,
and a rerun finishes what a dead driver left.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from job.contract import default
from search import racing
from search._optuna import quiet_experimental, trial_id
from search.errors import StudyStopped
from search.exits import DriverExit
from search.owner import alive_here, driver_id
from search.settings import Settings
from search.storage import Requeue, StorageUnavailable, scrub
from search.storage.retrying import BACKOFF_MAX
from search.study import confirmation as confirm
from search.study.lifecycle import FINISHED, OpenedStudy
from search.trial import DOES_NOT_FIT, TrialRunner

log = logging.getLogger("search")

__all__ = ["Driver"]

_WAIT_FOR_BUDGET = 2.0
"""Seconds between looks at the study while other drivers' runs may still meet the budget."""

_ORPHAN_AFTER = 600.0
"""Seconds after which a RUNNING trial that no driver ever claimed (its driver died between
asking for it and labelling it) is failed."""


class Driver:
    """Runs the ``opened`` study (opened with ``settings``, :func:`search.study.open_study`)
    to its budget with ``settings.parallel`` worker threads."""

    def __init__(self, settings: Settings, opened: OpenedStudy) -> None:
        self.settings = settings
        self.study, self.storage = opened.study, opened.storage
        self.requeue = Requeue(settings.retries)
        self.id = driver_id()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._active: set[int] = set()  # trial ids, for heartbeats
        self._error: StudyStopped | None = None
        self._failures_in_a_row = 0
        self.runner = TrialRunner(settings, self.study, self.storage, self._stopping, self.requeue)
        self.sibling: optuna.Study | None = None  # the confirmation runs' study, once planned
        self._confirm_runner: TrialRunner | None = None
        self._baseline: FrozenTrial | None = None  # the trial the race compares with
        self._deadline: float | None = None  # time.monotonic() after which no trial starts
        self.timed_out = False
        self._reaped_at = -float("inf")  # time.monotonic() of the last look for gone trials
        self._study_id = self.storage.get_study_id_from_name(self.study.study_name)

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
        """Run trials until the study holds ``settings.trials`` finished ones, then the
        confirmation phase; call ``on_trial`` with each trial (and confirmation run) this
        driver recorded.

        Raises :class:`StudyStopped` when a trial shows the study cannot succeed (bad
        configuration, data unavailable, a full disk, too many failures in a row) or the
        database stayed unreachable; the other running trials are stopped first.
        """
        self.settings.output.mkdir(parents=True, exist_ok=True)
        if self.settings.timeout is not None:
            self._deadline = time.monotonic() + self.settings.timeout
        try:
            with self._lock:
                self._reap()
        except StudyStopped as exc:
            self._stop_study(exc)
            raise
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        try:
            self._phase(self._next_trial, self.runner.run, on_trial)
            if self._error is None and self._plan_confirmation():
                self._phase(self._next_confirmation, self._confirm, on_trial)
        finally:
            self._stopping.set()
        if self._error is not None:
            raise self._error

    def confirmations(self) -> confirm.Tally | None:
        """Where the confirmation race stands (None before the phase)."""
        if self.sibling is None:
            return None
        return confirm.tally(self.sibling)

    def confirmation_pending(self) -> bool:
        """True while the race is not settled (runs queued, or a round still to plan): the
        phase was stopped early."""
        if self.sibling is None:
            return False
        rounds = confirm.standing_of(self.sibling)
        return rounds is not None and not rounds.settled

    def _phase(
        self,
        take: Callable[[], optuna.Trial | None],
        execute: Callable[[optuna.Trial, str | None], FrozenTrial | None],
        on_trial: Callable[[FrozenTrial], None] | None,
    ) -> None:
        """Worker threads run what ``take`` gives them with ``execute`` until it is None."""
        workers = [
            threading.Thread(
                target=self._work, args=(slot, take, execute, on_trial), name=f"worker-{slot}"
            )
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

    def _plan_confirmation(self) -> bool:
        """Plan the confirmation race's current round; False when the phase is off, the
        budget is not met (stopped) or the baseline never completed (nothing to race)."""
        settings = self.settings
        if settings.confirm <= 0 or self._stopping.is_set():
            return False
        if self.finished() < settings.trials:
            return False
        from search.report import baseline_trial

        self._baseline = baseline_trial(self.study)
        if self._baseline is None:
            log.warning("the baseline (the study's first trial) never completed: nothing to race")
            return False
        self._plan_round()
        assert self.sibling is not None
        runner = TrialRunner(settings, self.sibling, self.storage, self._stopping, self.requeue,
                             folder="confirm", what="confirmation run")  # fmt: skip
        self._confirm_runner = runner
        return True

    def _plan_round(self) -> bool:
        """Queue the current round's missing runs (under the creation lock); True once the
        race is settled."""
        settings = self.settings
        assert self._baseline is not None
        seed = int(settings.job_env.get("SEED", default("SEED")))
        self.sibling, rounds = confirm.plan(
            self.study,
            self.storage,
            racing.Policy(settings.confirm, settings.confirm_seeds),
            confirm.seeds(seed, settings.confirm_seeds),
            self._baseline,
        )
        return rounds.settled

    def _confirm(self, trial: optuna.Trial, gpu: str | None) -> FrozenTrial | None:
        """Run one confirmation run: its configuration with its seed."""
        assert self._confirm_runner is not None
        _, seed = confirm.suggest_identity(trial)
        return self._confirm_runner.run(trial, gpu, {"SEED": str(seed)})

    def stop(self) -> None:
        """Stop launching trials and stop the running ones (they are queued to run again)."""
        self._stopping.set()

    def finished(self) -> int:
        """How many trials of the study are COMPLETE or PRUNED (counted by the database)."""
        return self.storage.get_n_trials(self._study_id, FINISHED)

    def _stop_study(self, exc: StudyStopped) -> None:
        """Keep the first reason the study stopped and stop every worker."""
        with self._lock:
            self._error = self._error or exc
        self._stopping.set()

    def _work(
        self,
        slot: int,
        take: Callable[[], optuna.Trial | None],
        execute: Callable[[optuna.Trial, str | None], FrozenTrial | None],
        on_trial: Callable[[FrozenTrial], None] | None,
    ) -> None:
        gpus = self.settings.gpus
        gpu = gpus[slot % len(gpus)] if gpus else None
        try:
            while not self._stopping.is_set():
                trial = take()
                if trial is None:
                    return
                frozen = self._run(trial, gpu, execute)
                if frozen is not None:
                    self._count(frozen)
                    if on_trial is not None:
                        on_trial(frozen)
        except StudyStopped as exc:
            self._stop_study(exc)

    def _run(
        self,
        trial: optuna.Trial,
        gpu: str | None,
        execute: Callable[[optuna.Trial, str | None], FrozenTrial | None],
    ) -> FrozenTrial | None:
        """Run one trial; a bug in the driver fails that trial and the study goes on."""
        try:
            return execute(trial, gpu)
        except StudyStopped:
            raise
        except Exception as exc:
            log.exception("trial %d: the driver failed to run it", trial.number)
            reason = scrub(f"driver error: {type(exc).__name__}: {exc}", self.settings.storage)
            return self._fail(trial, reason)
        finally:
            with self._lock:
                self._active.discard(trial_id(trial))

    def _fail(self, trial: optuna.Trial, reason: str) -> FrozenTrial | None:
        try:
            trial.set_user_attr("fail_reason", reason[:500])
            return trial.study.tell(trial, state=TrialState.FAIL)
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
        """Ask for a trial while finished + running < budget; None once the budget is met or
        ``--timeout`` has passed."""
        while not self._stopping.is_set():
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.timed_out = True
                return None
            with self._lock:
                self._reap_due()
                # Counted, not loaded: the study's size does not make this dearer.
                counts = self.storage.state_counts(self._study_id)
                done = sum(counts.get(state, 0) for state in FINISHED)
                running = counts.get(TrialState.RUNNING, 0)
                if done >= self.settings.trials:
                    return None
                if done + running < self.settings.trials:
                    with quiet_experimental():  # heartbeats come from our own thread
                        trial = self.study.ask()
                    return self._claim(trial)
            self._stopping.wait(_WAIT_FOR_BUDGET)
        return None

    def _next_confirmation(self) -> optuna.Trial | None:
        """Take a queued confirmation run; once none is queued or running, plan the next
        round; None once the race is settled."""
        while not self._stopping.is_set():
            sibling = self.sibling
            assert sibling is not None
            with self._lock:
                self._reap_due()
                trials = sibling.get_trials(deepcopy=False)
                for waiting in (t for t in trials if t.state == TrialState.WAITING):
                    # Only one driver's WAITING -> RUNNING change succeeds (Optuna's ask
                    # pops a queued trial the same way), so each run is taken once.
                    if self.storage.set_trial_state_values(
                        trial_id(waiting), state=TrialState.RUNNING
                    ):
                        return self._claim(optuna.Trial(sibling, trial_id(waiting)))
                busy = any(t.state == TrialState.RUNNING for t in trials)
            if not busy:  # the round is over (here or in another driver): the next one
                if self._plan_round():
                    return None
                continue
            self._stopping.wait(_WAIT_FOR_BUDGET)
        return None

    def _claim(self, trial: optuna.Trial) -> optuna.Trial:
        """Label ``trial`` as this driver's and start its heartbeats."""
        trial.set_user_attr("driver", self.id)
        self._active.add(trial_id(trial))
        self.storage.record_heartbeat(trial_id(trial))
        return trial

    def _reap_due(self) -> None:
        """:meth:`_reap`, when a heartbeat interval has passed since the last time: a trial is
        stale only after three intervals without a heartbeat, so looking more often (before
        every trial) finds nothing sooner and costs the database a few statements each time."""
        if time.monotonic() - self._reaped_at >= self.settings.heartbeat:
            self._reap()

    def _reap(self) -> None:
        """Fail (and queue again) running trials whose driver is gone.

        A trial is gone when its heartbeat is stale, when its driver ran on this host and is
        no longer running, or when no driver ever claimed it. Staleness is judged only once
        the database has been reachable for a whole grace period plus the longest wait
        between two attempts: after an outage, every driver's heartbeats are old, and each
        must get the chance to notice the database is back (its next attempt comes up to
        BACKOFF_MAX later) and beat again first.
        """
        self._reaped_at = time.monotonic()
        settled = self.storage.grace_period + BACKOFF_MAX
        studies = [self.study] if self.sibling is None else [self.study, self.sibling]
        for study in studies:
            if time.monotonic() - self.storage.reachable_since >= settled:
                with quiet_experimental():
                    fail_stale_trials(study)
            self._reap_gone(study)

    def _reap_gone(self, study: optuna.Study) -> None:
        now = datetime.datetime.now()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get("driver")
            if owner == self.id:
                continue
            if owner:
                gone = not alive_here(owner)
            else:
                started = t.datetime_start or now
                gone = (now - started).total_seconds() > _ORPHAN_AFTER
            if gone:
                self._requeue_running(study, t)

    def _requeue_running(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if self.storage.set_trial_state_values(trial_id(trial), state=TrialState.FAIL):
                log.warning("trial %d: its driver is gone; queued again", trial.number)
                self.requeue(study, self.storage.get_trial(trial_id(trial)))

    def _beat(self) -> None:
        """Record a heartbeat for every running trial of this driver, every ``heartbeat`` s."""
        while not self._stopping.wait(self.settings.heartbeat):
            with self._lock:
                ids = list(self._active)
            for active_id in ids:
                try:
                    self.storage.record_heartbeat(active_id)
                except StorageUnavailable as exc:  # may be the first to notice: stop the study
                    self._stop_study(exc)
                    return
                except Exception:
                    log.debug("heartbeat of trial id %d failed", active_id, exc_info=True)
