"""Riding out an outage: the state of the connection to one database, and the retry loop
every storage call goes through.

A call that fails because the database cannot be reached is retried with backoff until the
database answers again, for at most ``retry_seconds`` per outage. Past that bound the call
raises :class:`~search.storage.errors.StorageUnavailable`, and every later call fails at
once, so a stopping driver does not wait out the bound again for each trial.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from search.storage.errors import StorageUnavailable, database_error, unreachable
from search.storage.urls import describe, scrub

log = logging.getLogger("search")

_P = ParamSpec("_P")
_R = TypeVar("_R")

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
"""The shortest and the longest wait between two attempts, in seconds."""


class Outage:
    """The state of the connection to one database, shared by every thread that uses it:
    when the current outage began, when the database last came back, whether we gave up."""

    def __init__(self, url: str, retry_seconds: float) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._since: float | None = None
        self.reachable_since = time.monotonic()
        self.given_up = False

    def failed(self, exc: BaseException, *, starting: bool = False) -> None:
        """Record a failed attempt: wait before the next one, or raise StorageUnavailable once
        the outage has lasted ``retry_seconds``."""
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
                log.warning(
                    "the study's database, %s, cannot be reached (%s); retrying for up to %g s",
                    describe(self.url),
                    scrub(database_error(exc), self.url),
                    self.retry_seconds,
                )
            lasted = now - self._since
            if self.given_up or lasted >= self.retry_seconds:
                self.given_up = True
                raise StorageUnavailable(self._sentence(exc, starting)) from None
        # Back off with the outage's age: half of it so far, between the two bounds.
        pause = min(BACKOFF_MAX, max(BACKOFF_FIRST, lasted / 2))
        time.sleep(max(0.0, min(pause, self.retry_seconds - lasted)))

    def succeeded(self) -> None:
        """Record a call that reached the database: an outage, if any, is over."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            log.warning(
                "the study's database, %s, is reachable again after %.0f s",
                describe(self.url),
                time.monotonic() - self._since,
            )
            self._since = None
            self.reachable_since = time.monotonic()

    def _sentence(self, exc: BaseException, starting: bool) -> str:
        what = "could not be reached" if starting else "stayed unreachable"
        then = (
            "check that it runs and that --storage names it, then rerun."
            if starting
            else "the running trials were stopped (checkpointed) and resume when you rerun "
            "the same command once it is back."
        )
        return (
            f"the study's database, {describe(self.url)}, {what} for "
            f"{self.retry_seconds:g} s ({scrub(database_error(exc), self.url)}); {then}"
        )


class Retrying:
    """An RDB storage's calls, retried while its database is unreachable: the part of
    :class:`~search.storage.forward.RetryingStorage` that is not forwarding."""

    def __init__(self, backend: RDBStorage, url: str, outage: Outage) -> None:
        self.backend = backend
        self.url = url
        self.outage = outage

    @property
    def reachable_since(self) -> float:
        """``time.monotonic()`` when the database last came back (or was opened)."""
        return self.outage.reachable_since

    @property
    def grace_period(self) -> int:
        """Seconds without a heartbeat after which a running trial is stale."""
        return int(self.backend.grace_period or 2 * (self.backend.heartbeat_interval or 0))

    def call(self, function: Callable[[], _R]) -> _R:
        """Run ``function`` (which uses this storage), retrying it as a whole while the
        database is unreachable, up to the bound."""
        return self._retry(function)

    def _retry(self, method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """``method(*args, **kwargs)``, retried while the database is unreachable."""
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self.outage.failed(exc)
                continue
            self.outage.succeeded()
            return result

    def _retry_state(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """``set_trial_state_values``, retried; a retry that finds the trial already in
        ``state`` counts as done (the first attempt committed before the connection dropped)."""
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return self.backend.set_trial_state_values(trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                if attempts > 1 and self.backend.get_trial(trial_id).state == state:
                    return True
                raise

        return self._retry(attempt)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RetryingStorage cannot be pickled; open the URL in each process")
