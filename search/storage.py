"""The study's database: an Optuna RDB storage with heartbeats, from a URL."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from search._optuna import quiet_experimental


def make_storage(url: str, *, heartbeat: int = 10, retries: int = 2) -> RDBStorage:
    """An RDBStorage that records a heartbeat per running trial (every ``heartbeat`` s) and
    queues a stale trial again, up to ``retries`` times."""
    url = postgres_driver(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # seconds to wait for SQLite's file lock
    with quiet_experimental():
        return RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=Requeue(retries),
        )


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


def postgres_driver(url: str) -> str:
    """Name psycopg2 in a bare ``postgresql://`` URL when psycopg 3 (SQLAlchemy 2.1's default
    driver) is not installed; the project depends on psycopg2-binary."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url
