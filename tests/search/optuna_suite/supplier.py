"""The storages Optuna's own storage tests run against: the project's storage on SQLite and
on PostgreSQL, in place of ``optuna.testing.storages`` (whose list names Optuna's storages).

Each ``StorageSupplier(mode, **rdb_kwargs)`` opens a new, empty database and returns a
:class:`search.storage.RetryingStorage` around an RDB storage built with the test's keyword
arguments (heartbeat interval, grace period, stale-trial callback).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from optuna.storages import RDBStorage

from search.storage import RetryingStorage
from search.storage.retrying import Outage
from search.storage.urls import postgres_driver

STORAGE_MODES: list[Any] = ["sqlite", "postgresql"]
STORAGE_MODES_HEARTBEAT = ["sqlite", "postgresql"]

SQLITE3_TIMEOUT = 300
"""Seconds SQLite waits for its file lock (what Optuna's own supplier uses)."""

_RETRY_SECONDS = 60.0
"""The outage bound of the storages under test."""

server_url: str | None = None
"""A PostgreSQL server's URL (any database on it); set by the suite's conftest."""


class StorageSupplier:
    """Optuna's context manager, for the modes above."""

    def __init__(self, storage_specifier: str, **kwargs: Any) -> None:
        self.mode = storage_specifier
        self.extra_args = kwargs
        self.storage: RetryingStorage | None = None
        self._drop: str | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> RetryingStorage:
        if self.mode == "sqlite":
            self._folder = tempfile.TemporaryDirectory(prefix="optuna-suite-")
            url = f"sqlite:///{Path(self._folder.name) / 'study.db'}"
            engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE3_TIMEOUT}}
        elif self.mode == "postgresql":
            url = self._new_database()
            engine_kwargs = {"pool_pre_ping": True}
        else:
            raise AssertionError(f"no storage mode {self.mode!r} in the project's suite")
        backend = RDBStorage(url, engine_kwargs=engine_kwargs, **self.extra_args)
        self.storage = RetryingStorage(backend, url, Outage(url, _RETRY_SECONDS))
        return self.storage

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if self.storage is not None:
            self.storage.backend.engine.dispose()
        if self._drop is not None:
            _admin(f'DROP DATABASE IF EXISTS "{self._drop}" WITH (FORCE)')
        if self._folder is not None:
            self._folder.cleanup()

    def _new_database(self) -> str:
        assert server_url is not None, "the suite's conftest sets the PostgreSQL server"
        self._drop = f"suite_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE DATABASE "{self._drop}"')
        base = postgres_driver(server_url).rsplit("/", 1)[0]
        return f"{base}/{self._drop}"


def _admin(statement: str) -> None:
    import psycopg2

    assert server_url is not None
    admin = psycopg2.connect(server_url.replace("postgresql+psycopg2://", "postgresql://"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(statement)
    finally:
        admin.close()


__all__ = ["STORAGE_MODES", "STORAGE_MODES_HEARTBEAT", "StorageSupplier"]
