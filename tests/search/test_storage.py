"""The study's database: retries through an outage, a bound, serialised creation, no
password in any message. Against a throwaway PostgreSQL server the tests stop and start,
the shared one (fresh databases only) and SQLite."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from search._optuna import BaseHeartbeat
from search.storage import (
    RetryingStorage,
    StorageRefused,
    StorageUnavailable,
    describe,
    make_storage,
    scrub,
)
from testkit.postgres import PASSWORD, Server, throwaway_postgres
from tests.conftest import need
from tests.search.helpers import empty_database, run_together


@pytest.fixture
def postgres_server() -> Iterator[Server]:
    yield from throwaway_postgres(need)


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("postgresql+psycopg2://u:pw@db.example:6543/optuna", "PostgreSQL at db.example:6543"),
        ("postgresql://u:pw@db.example/optuna", "PostgreSQL at db.example:5432 (database optuna)"),
        ("sqlite:////tmp/out/study.db", "SQLite file /tmp/out/study.db"),
        ("not a url", "not a valid SQLAlchemy URL"),
    ],
)
def test_describe_names_the_database_without_its_password(url: str, text: str) -> None:
    assert text in describe(url)
    assert "pw" not in describe(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:s3cr%40t@h/d", "failed for s3cr@t and s3cr%40t"),
        ("postgresql://u:plain@h/d", "password plain was rejected"),
        ("postgresql://u:p@ss:w@rd@h/d", "could not parse p@ss:w@rd"),
    ],
)
def test_scrub_removes_the_password_as_written_and_decoded(url: str, message: str) -> None:
    cleaned = scrub(message, url)
    assert "***" in cleaned
    for secret in ("s3cr", "plain", "p@ss"):
        assert secret not in cleaned


def test_retrying_storage_forwards_every_storage_method() -> None:
    wanted = {
        name
        for base in (optuna.storages.BaseStorage, BaseHeartbeat)
        for name, _ in inspect.getmembers(base, inspect.isfunction)
        if not name.startswith("__")
    }
    assert wanted <= set(vars(RetryingStorage))


def test_a_call_during_an_outage_waits_for_the_database(postgres_server: Server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="search")
    storage = make_storage(postgres_server.url(), retry_seconds=120)
    optuna.create_study(storage=storage, study_name="outage")
    postgres_server.stop()
    found: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: found.append([s.study_name for s in storage.get_all_studies()])
    )
    reader.start()
    for _ in range(600):  # until the reader has seen the database down
        if any("cannot be reached" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.1)
    postgres_server.start()
    reader.join(timeout=120)
    assert found == [["outage"]]
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_past_the_bound_calls_raise_storage_unavailable(postgres_server: Server) -> None:
    storage = make_storage(postgres_server.url(), retry_seconds=1)
    postgres_server.stop()
    with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{postgres_server.port}") as err:
        storage.get_all_studies()
    assert err.value.code == 6
    assert PASSWORD not in str(err.value)
    with pytest.raises(StorageUnavailable):  # given up: later calls fail too
        storage.get_all_studies()


def test_an_unreachable_database_at_start_is_retried_then_unavailable(
    postgres_server: Server,
) -> None:
    postgres_server.stop()
    with pytest.raises(StorageUnavailable, match="could not be reached for 1 s") as err:
        make_storage(postgres_server.url(), retry_seconds=1)
    assert f"127.0.0.1:{postgres_server.port}" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_a_wrong_password_is_refused_at_once(postgres_server: Server) -> None:
    wrong = "Wrong-Pw-0042"
    with pytest.raises(StorageRefused, match="password authentication failed") as err:
        make_storage(postgres_server.url(password=wrong), retry_seconds=300)
    assert wrong not in str(err.value)
    assert PASSWORD not in str(err.value)


OPEN = """
import sys, time
from pathlib import Path
from search.settings import Settings
from search.space import default_space
from search.study import open_study
url, start, output = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
settings = Settings(trials=1, output=output, storage=url, study_name="race",
                    space=default_space(), launcher=None, confirm=0)
time.sleep(max(0.0, start - time.time()))  # all of them at the same moment
print(open_study(settings, print).study.study_name)
"""


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from empty_database(request.param, tmp_path)


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_processes_opening_one_study_at_once_on_an_empty_database_all_succeed(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url
    start = time.time() + 3  # seconds: every interpreter has imported Optuna by then
    results = run_together(OPEN, url, str(start), str(tmp_path / "out"))
    assert [code for code, _ in results] == [0] * 4, [err for _, err in results]
    assert len(optuna.get_all_study_names(make_storage(url, retry_seconds=60))) == 1


def test_a_retrying_storage_is_an_optuna_storage(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=60)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert isinstance(storage, BaseHeartbeat)


def test_an_unpickled_storage_opens_its_own_connections(tmp_path: Path) -> None:
    import pickle

    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=42)
    optuna.create_study(storage=storage, study_name="pickled")
    restored = pickle.loads(pickle.dumps(storage))
    assert [s.study_name for s in restored.get_all_studies()] == ["pickled"]
    assert restored.backend.engine is not storage.backend.engine
    assert restored.outage is not storage.outage
    assert restored.outage.retry_seconds == 42
