"""Queue a stale or stopped trial's parameters again: the storage's stale-trial callback."""

from __future__ import annotations

import copy

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from search._optuna import quiet_experimental


class Requeue:
    """Queue a failed trial's parameters again as a new WAITING trial, up to ``retries``
    times per original trial (Optuna's retry callback, which records the retry history).

    The new trial starts with no user attributes: everything in them (its driver, exit code,
    failure) describes one run, and a stale ``driver`` would make it look orphaned.
    """

    def __init__(self, retries: int) -> None:
        with quiet_experimental():
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=retries)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue ``trial``'s parameters again (nothing when its retries are used up)."""
        fresh = copy.copy(trial)
        fresh.user_attrs = {}
        self._retry(study, fresh)
