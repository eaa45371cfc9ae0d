"""Fixtures for the storage tests: a throwaway PostgreSQL server for the module, a fresh
database on it per test, and the project's storage behind a real fault injector."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from search.storage import RetryingStorage, make_storage
from testkit.postgres import PASSWORD, Server, throwaway_postgres
from tests.conftest import need
from tests.search.storage.faults import CommitDropper, SqliteCommitDropper


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from throwaway_postgres(need)


def new_database(server: Server, port: int | None = None) -> str:
    """The URL of a new, empty database on ``server`` (reached through ``port``)."""
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(
        host="127.0.0.1", port=server.port, user="postgres", password=PASSWORD, dbname="postgres"
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return server.url(port=port).rsplit("/", 1)[0] + f"/{name}?sslmode=disable"


@dataclass
class Faulty:
    """The project's storage, and the injector that drops the reply to its next commit."""

    storage: RetryingStorage
    dropper: CommitDropper | SqliteCommitDropper


@pytest.fixture(params=["sqlite", "postgresql"])
def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Faulty]:
    if request.param == "sqlite":
        storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=60, heartbeat=10)
        yield Faulty(storage, SqliteCommitDropper(storage.backend))
        storage.backend.engine.dispose()
        return
    server = request.getfixturevalue("server")
    proxy = CommitDropper(server.port)
    storage = make_storage(new_database(server, port=proxy.port), retry_seconds=60, heartbeat=10)
    try:
        yield Faulty(storage, proxy)
    finally:
        storage.backend.engine.dispose()
        proxy.close()
