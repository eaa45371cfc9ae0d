"""Outage or not: each real database error is classified, and a permanent one stops the
storage at once with one sentence (exit 6) instead of being retried as an outage."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from search._optuna import quiet_experimental
from search.storage import RetryingStorage, StorageBroken, make_storage
from search.storage.errors import classify
from testkit.postgres import PASSWORD, Server, fake_postgres
from tests.search.storage.conftest import new_database


def _error_of(url: str, statement: str = "SELECT 1", **connect_args: object) -> BaseException:
    engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(statement))
            connection.commit()
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{statement} on {url} did not fail")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- outages: cannot reach the server now ---------------------------------------------------


def connection_refused(_: Path) -> BaseException:
    return _error_of(f"postgresql+psycopg2://u:p@127.0.0.1:{_closed_port()}/d")


def dns_failure(_: Path) -> BaseException:
    return _error_of("postgresql+psycopg2://u:p@db.invalid/d", connect_timeout=5)


def connect_timeout(_: Path) -> BaseException:
    with fake_postgres() as port:
        return _error_of(f"postgresql+psycopg2://u:p@127.0.0.1:{port}/d", connect_timeout=1)


def starting_up(_: Path) -> BaseException:
    with fake_postgres("57P03", "the database system is starting up") as port:
        return _error_of(f"postgresql+psycopg2://u:p@127.0.0.1:{port}/d")


def shutting_down(_: Path) -> BaseException:
    with fake_postgres("57P03", "the database system is shutting down") as port:
        return _error_of(f"postgresql+psycopg2://u:p@127.0.0.1:{port}/d")


OUTAGES = [connection_refused, dns_failure, connect_timeout, starting_up, shutting_down]


@pytest.mark.parametrize("make", OUTAGES, ids=[m.__name__ for m in OUTAGES])
def test_an_error_that_says_the_server_cannot_be_reached_is_an_outage(
    make: Callable[[Path], BaseException], tmp_path: Path
) -> None:
    assert classify(make(tmp_path)) == "outage"


def test_a_server_that_terminated_our_connection_is_an_outage(server: Server) -> None:
    url = new_database(server)
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        pid = connection.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as other:
            other.execute(sqlalchemy.text(f"SELECT pg_terminate_backend({pid})"))
        with pytest.raises(sqlalchemy.exc.DBAPIError) as err:
            connection.execute(sqlalchemy.text("SELECT 1"))
    engine.dispose()
    assert classify(err.value) == "outage"


def test_a_sqlite_file_locked_by_another_process_is_busy(tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = _error_of(f"sqlite:///{tmp_path / 'db'}", "INSERT INTO t VALUES (1)", timeout=0)
    finally:
        holder.close()
    assert classify(error) == "busy"


# -- permanent: the database answered, and will answer the same again ----------------------


def _sqlite_study(tmp_path: Path, _server: Server | None) -> str:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=make_storage(url, retry_seconds=60), study_name="s")
    return url


def _postgres_study(_tmp_path: Path, server: Server | None) -> str:
    assert server is not None
    url = new_database(server)
    optuna.create_study(storage=make_storage(url, retry_seconds=60), study_name="s")
    return url


def _sql(url: str, statement: str) -> None:
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(statement))
    engine.dispose()


Breaker = Callable[[str, RetryingStorage], None]
"""Breaks the database at a URL while the storage has it open."""


def read_only(url: str, storage: RetryingStorage) -> None:
    if url.startswith("sqlite"):  # every new connection opens the file read-only
        path = sqlalchemy.make_url(url).database
        storage.backend.scoped_session.remove()
        storage.backend.engine.dispose()
        storage.backend.engine = sqlalchemy.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
        storage.backend.scoped_session.configure(bind=storage.backend.engine)
    else:
        name = sqlalchemy.make_url(url).database
        _sql(url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    storage.backend.engine.dispose()


def no_such_table(url: str, storage: RetryingStorage) -> None:
    _sql(url, "DROP TABLE trial_user_attributes")


def damaged_file(url: str, storage: RetryingStorage) -> None:
    path = Path(sqlalchemy.make_url(url).database or "")
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page but the first overwritten
    path.write_bytes(bytes(data))
    storage.backend.engine.dispose()  # connections that open the file again


def disk_full(url: str, storage: RetryingStorage) -> None:
    with sqlite3.connect(sqlalchemy.make_url(url).database or "") as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # The file may not grow: SQLite says "database or disk is full", as on a full disk.
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    sqlalchemy.event.listen(storage.backend.engine, "connect", cap)
    storage.backend.engine.dispose()


PERMANENT: list[tuple[str, Breaker, str]] = [
    ("sqlite", read_only, "writable"),
    ("sqlite", no_such_table, "lacks Optuna's tables"),
    ("sqlite", damaged_file, "check the database's disk and file"),
    ("sqlite", disk_full, "free space"),
    ("postgresql", read_only, "writable"),
    ("postgresql", no_such_table, "lacks Optuna's tables"),
]


@pytest.mark.parametrize(
    ("backend", "breaker", "fix"), PERMANENT, ids=[f"{b}-{f.__name__}" for b, f, _ in PERMANENT]
)
def test_a_permanent_database_error_stops_at_once_with_one_sentence(
    backend: str, breaker: Breaker, fix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("server") if backend == "postgresql" else None
    url = (_postgres_study if server else _sqlite_study)(tmp_path, server)
    storage = make_storage(url, retry_seconds=300)
    study = optuna.load_study(study_name="s", storage=storage)
    breaker(url, storage)
    started = time.monotonic()
    with pytest.raises(StorageBroken) as err, quiet_experimental():
        trial = study.ask()
        trial.set_user_attr("log", "x" * 100_000)  # a write that needs new pages
    assert time.monotonic() - started < 10  # seconds: not the 300 s an outage would wait
    assert err.value.code == 6
    message = str(err.value)
    assert fix in message
    assert message.endswith("then rerun the same command to continue.")
    assert "\n" not in message
    assert PASSWORD not in message


def test_a_wrong_password_is_permanent(server: Server) -> None:
    error = _error_of(server.url(password="Wrong-Pw-0042"))
    assert classify(error) == "permanent"


def _insert_while_locked(path: Path) -> Callable[[], None]:
    def insert() -> None:  # fails at once with "database is locked" while the lock is held
        engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
        try:
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))
        finally:
            engine.dispose()

    return insert


def _hold_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


@pytest.mark.parametrize("held", [0.0, 1.0])
def test_a_sqlite_lock_released_within_the_bound_is_waited_for(tmp_path: Path, held: float) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=60)
    holder = _hold_lock(tmp_path / "other.db")
    threading.Timer(held, holder.close).start()
    storage.call(_insert_while_locked(tmp_path / "other.db"))
    assert sqlite3.connect(tmp_path / "other.db").execute("SELECT count(*) FROM t").fetchone() == (
        1,
    )


def test_a_sqlite_lock_held_past_the_bound_stops_with_one_sentence(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=300)
    storage.outage.busy_seconds = 1
    holder = _hold_lock(tmp_path / "other.db")
    started = time.monotonic()
    try:
        with pytest.raises(StorageBroken, match="stayed locked by another process for 1 s") as e:
            storage.call(_insert_while_locked(tmp_path / "other.db"))
    finally:
        holder.close()
    assert time.monotonic() - started < 10  # seconds: the busy bound, not --storage-retry
    assert e.value.code == 6


def test_a_read_only_study_made_before_the_token_table_can_still_be_read(tmp_path: Path) -> None:
    database = tmp_path / "study.db"
    url = f"sqlite:///{database}"
    optuna.create_study(storage=make_storage(url, retry_seconds=60), study_name="s")
    with sqlite3.connect(database) as db:
        db.execute("DROP TABLE resnet_job_write_tokens")  # as an older version left it
    storage = make_storage(f"sqlite:///file:{database}?mode=ro&uri=true", retry_seconds=60)
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]
