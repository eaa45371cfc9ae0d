"""Riding out an outage: the state of the connection to one database, and the retry loop
every storage call goes through.

A call that fails because the database cannot be reached is retried with backoff until the
database answers again, for at most ``retry_seconds`` per outage. Past that bound the call
raises :class:`~search.storage.errors.StorageUnavailable`, and every later call fails at
once, so a stopping driver does not wait out the bound again for each trial. A SQLite file
locked by another process is retried for :data:`~search.storage.errors.BUSY_SECONDS`; any
other database error is permanent and raises :class:`~search.storage.errors.StorageBroken`
at once (:func:`~search.storage.errors.classify` tells them apart).

A write that a retry could apply twice goes through :meth:`Retrying._write`, which tags it
with a token (:mod:`search.storage.tokens`) and, before running it again, looks whether the
first attempt committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from optuna.storages import RDBStorage

from search._optuna import CachedStorage
from search.storage.errors import (
    BUSY_SECONDS,
    Kind,
    StorageBroken,
    StorageUnavailable,
    classify,
    database_error,
)
from search.storage.tokens import Committed, Target, Tokens
from search.storage.urls import describe, scrub

log = logging.getLogger("search")

_P = ParamSpec("_P")
_R = TypeVar("_R")

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
"""The shortest and the longest wait between two attempts, in seconds."""


_FIXES = (
    (("readonly", "read-only"), "make the database writable (SQLite: its file and folder)"),
    (("disk is full", "no space"), "free space on the database's disk"),
    (("disk i/o", "malformed", "not a database"), "check the database's disk and file"),
    (
        ("no such table", "does not exist", "undefined"),
        "point --storage at the study's database (this one lacks Optuna's tables)",
    ),
    (("authentication", "password"), "check the user and password of --storage"),
)
"""Words of a permanent error, and what the user should do about it."""

_FIX = "fix the database"


class Outage:
    """The state of the connection to one database, shared by every thread that uses it:
    when the current outage began, when the database last came back, whether we gave up."""

    def __init__(self, url: str, retry_seconds: float) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.busy_seconds = BUSY_SECONDS
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

    def broken(self, exc: BaseException, kind: Kind) -> str:
        """The sentence for a permanent error ``exc`` of the database."""
        error = scrub(database_error(exc), self.url)
        if kind == "busy":
            what = f"stayed locked by another process for {self.busy_seconds:g} s ({error})"
            fix = "stop the other process, or use PostgreSQL for several drivers"
        else:
            what = f"failed with an error no retry cures ({error})"
            fix = next((f for words, f in _FIXES if any(w in error.lower() for w in words)), _FIX)
        return (
            f"the study's database, {describe(self.url)}, {what}; {fix}, then rerun the same "
            "command to continue."
        )

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
    :class:`~search.storage.forward.RetryingStorage` that is not forwarding.

    It pickles as its RDB storage (which opens its engine again) and its bound: a process
    that unpickles it gets its own connections and outage state.
    """

    def __init__(self, backend: RDBStorage, url: str, outage: Outage) -> None:
        self.backend = backend
        self.url = url
        self.outage = outage
        self.tokens = Tokens(backend)
        self.cache = CachedStorage(backend)  # the trials we read (see forward.py)

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
        """``method(*args, **kwargs)``, retried while the database is unreachable (or, for
        up to BUSY_SECONDS, locked); a permanent database error raises StorageBroken."""
        busy_since: float | None = None
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                kind = classify(exc)
                if kind == "other":
                    raise
                if kind == "outage":
                    self.outage.failed(exc)
                    continue
                if kind == "busy":
                    busy_since = busy_since or time.monotonic()
                    if time.monotonic() - busy_since < self.outage.busy_seconds:
                        time.sleep(BACKOFF_FIRST)
                        continue
                raise StorageBroken(self.outage.broken(exc, kind)) from None
            self.outage.succeeded()
            return result

    def _write(
        self,
        target: Target,
        method: Callable[..., _R],
        *args: Any,
        ref_id: int | None = None,
        committed: Callable[[int], _R],
    ) -> _R:
        """``method(*args)`` applied exactly once, retried like any call: a retry that finds
        the first attempt's token returns ``committed(id the write recorded)`` instead of
        writing again."""
        if not self.tokens.available:  # a database that refused the table: read-only
            return self._retry(method, *args)
        token = Tokens.new()
        tried = False

        def attempt() -> _R:
            nonlocal tried
            if tried:
                found = self.tokens.find(token)
                if found is not None:
                    return committed(found)
            tried = True
            try:
                with self.tokens.tagging(token, target, ref_id):
                    return method(*args)
            except Committed as done:  # Optuna ran it again itself, and it had committed
                return committed(done.ref_id)

        return self._retry(attempt)

    def __getstate__(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": self.url, "retry": self.outage.retry_seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        url = state["url"]
        Retrying.__init__(self, state["backend"], url, Outage(url, state["retry"]))
