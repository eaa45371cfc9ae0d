"""Opening the database, serialised between drivers by the creation lock.

Creating the schema and the study is serialised between drivers that start at the same
moment on an empty database: a PostgreSQL advisory lock, or a lock file beside a SQLite
database, is held while one of them creates it. :func:`open_storage` opens the database and
runs the caller's work (creating or checking the study) under the same acquisition of that
lock. A client that does not take the lock (plain Optuna, another tool) can still race us;
losing such a race is retried a few times.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from optuna.storages import RDBStorage

from search._optuna import quiet_experimental
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

_R = TypeVar("_R")

_CREATION_LOCK = zlib.crc32(b"resnet-job: optuna schema and study creation")
"""PostgreSQL advisory lock key held while a driver creates the schema or the study."""

_CREATION_RACES = 5
"""Attempts to open the storage again after losing a race to create the schema."""


def make_storage(
    url: str, *, retry_seconds: float, heartbeat: int | None = None, retries: int = 0
) -> RetryingStorage:
    """Open the database at ``url`` as a :class:`RetryingStorage` (see :func:`open_storage`);
    without ``heartbeat``, a storage that reads the study and records no heartbeats."""
    storage, _ = open_storage(
        url, retry_seconds=retry_seconds, heartbeat=heartbeat, retries=retries, then=_nothing
    )
    return storage


def _nothing(storage: RetryingStorage) -> None:
    return None


def open_storage(
    url: str,
    *,
    retry_seconds: float,
    heartbeat: int | None,
    retries: int,
    then: Callable[[RetryingStorage], _R],
) -> tuple[RetryingStorage, _R]:
    """Open the database at ``url`` and run ``then(storage)`` under the same acquisition of
    the creation lock; return the storage and what ``then`` returned.

    The storage records a heartbeat per running trial every ``heartbeat`` s and queues a
    stale trial again, up to ``retries`` times. A PostgreSQL server that cannot be reached is
    retried for up to ``retry_seconds`` (the lock taken again with each attempt), then
    :class:`StorageUnavailable`; a server that refuses us, a bad URL or a SQLite path that
    cannot be opened raises :class:`StorageRefused` at once, and a database that fails with a
    permanent error (read-only, full, damaged) :class:`StorageBroken`. What ``then`` raises
    otherwise is raised as it is.
    """
    url = postgres_driver(url)
    check_url(url)
    outage = Outage(url, retry_seconds)
    storage: RetryingStorage | None = None
    races = 0
    while True:
        try:
            with creation_lock(url):
                if storage is None:
                    storage = _connect(url, outage, heartbeat, retries)
                return storage, then(storage)
        except Exception as exc:
            kind = classify(exc)
            if storage is not None:  # opened: only the lock's own connection is retried here
                if kind == "other":
                    raise  # then's own error (a refused setting, say), as it is
                if kind in ("outage", "busy"):
                    outage.failed(exc)
                    continue
                raise StorageBroken(outage.broken(exc, kind)) from None
            if creation_race(exc) and races < _CREATION_RACES:
                races += 1  # a client outside the lock created the schema at the same time
                time.sleep(BACKOFF_FIRST * races)
                continue
            if refused(exc) or kind == "other":
                raise StorageRefused(_refusal(url, exc)) from None
            if kind == "outage" and not url.startswith("sqlite"):
                outage.failed(exc, starting=True)
                continue
            raise StorageBroken(outage.broken(exc, kind)) from None


def _connect(url: str, outage: Outage, heartbeat: int | None, retries: int) -> RetryingStorage:
    """The RDB storage at ``url`` (creating the schema it lacks) behind the retry loop."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # seconds to wait for SQLite's file lock
    beats: dict[str, Any] = {}
    if heartbeat is not None:
        beats = {
            "heartbeat_interval": heartbeat,
            "grace_period": 3 * heartbeat,
            "heartbeat_stale_trial_callback": Requeue(retries),
        }
    with quiet_experimental():
        backend = RDBStorage(url, engine_kwargs=kwargs, **beats)
    return RetryingStorage(backend, url, outage)  # creates its token table


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
