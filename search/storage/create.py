"""Opening the database and creating the study, serialised between drivers.

Creating the schema and the study is serialised between drivers that start at the same
moment on an empty database: a PostgreSQL advisory lock, or a lock file beside a SQLite
database, is held while one of them creates it. A client that does not take the lock (plain
Optuna, another tool) can still race us; losing such a race is retried a few times.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

from search._optuna import quiet_experimental
from search.settings import DEFAULTS
from search.storage.errors import (
    StorageBroken,
    StorageRefused,
    classify,
    creation_race,
    database_error,
    refused,
)
from search.storage.forward import RetryingStorage
from search.storage.requeue import Requeue
from search.storage.retrying import BACKOFF_FIRST, Outage
from search.storage.urls import check_url, describe, postgres_driver, scrub

_CREATION_LOCK = zlib.crc32(b"resnet-job: optuna schema and study creation")
"""PostgreSQL advisory lock key held while a driver creates the schema or the study."""

_CREATION_RACES = 5
"""Attempts to open the storage again after losing a race to create the schema."""


def make_storage(
    url: str,
    *,
    heartbeat: int = DEFAULTS.heartbeat,
    retries: int = DEFAULTS.retries,
    retry_seconds: float = DEFAULTS.storage_retry,
) -> RetryingStorage:
    """Open the database at ``url`` as a :class:`RetryingStorage` whose RDB storage records a
    heartbeat per running trial (every ``heartbeat`` s) and queues a stale trial again, up to
    ``retries`` times.

    A PostgreSQL server that cannot be reached is retried for up to ``retry_seconds``, then
    :class:`StorageUnavailable`; a server that refuses us, a bad URL or a SQLite path that
    cannot be opened raises :class:`StorageRefused` at once, and a database that fails with a
    permanent error (read-only, full, damaged) :class:`StorageBroken`.
    """
    url = postgres_driver(url)
    check_url(url)
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if sqlite:
        kwargs = {"connect_args": {"timeout": 120}}  # seconds to wait for SQLite's file lock

    outage = Outage(url, retry_seconds)

    def create() -> RetryingStorage:
        with quiet_experimental():
            backend = RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=Requeue(retries),
            )
        return RetryingStorage(backend, url, outage)  # creates its token table

    races = 0
    while True:
        try:
            with creation_lock(url):
                return create()
        except Exception as exc:
            if creation_race(exc) and races < _CREATION_RACES:
                races += 1  # a client outside the lock created the schema at the same time
                time.sleep(BACKOFF_FIRST * races)
                continue
            kind = classify(exc)
            if refused(exc) or kind == "other":
                raise StorageRefused(_refusal(url, exc)) from None
            if kind == "outage" and not sqlite:
                outage.failed(exc, starting=True)
                continue
            raise StorageBroken(outage.broken(exc, kind)) from None


def _refusal(url: str, exc: BaseException) -> str:
    return f"cannot open the study's database, {describe(url)}: {scrub(database_error(exc), url)}."


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold the lock that serialises schema and study creation on the database at ``url``.

    PostgreSQL: a session advisory lock on a connection of its own (released with it, even if
    this process dies). SQLite: an exclusive lock on ``<file>.lock``. Other databases: none
    (creation is retried on the integrity error instead).
    """
    if url.startswith("sqlite"):
        database = _sqlite_path(url)
        if not database or database == ":memory:":
            yield
            return
        from filelock import FileLock

        Path(database).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{database}.lock", timeout=-1):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_CREATION_LOCK})"))
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    connection.execute(
                        sqlalchemy.text(f"SELECT pg_advisory_unlock({_CREATION_LOCK})")
                    )
    finally:
        engine.dispose()


def _sqlite_path(url: str) -> str:
    """The file a SQLite URL names, also in its URI form (``sqlite:///file:PATH?mode=ro&uri=true``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = database.removeprefix("file:").partition("?")[0]
    return database


def create_or_load_study(
    storage: RetryingStorage,
    study_name: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    first_params: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Create the study (maximising) or load it if another driver already did, under the
    creation lock; retried while the database is unreachable. A new study gets
    ``first_params`` as its first trial, queued under the same lock, so drivers starting
    together queue it once."""

    def create() -> optuna.Study:
        with creation_lock(storage.url):
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
            if first_params is not None and not study.get_trials(deepcopy=False):
                study.enqueue_trial(dict(first_params))
            return study

    return storage.call(create)
