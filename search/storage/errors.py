"""Storage errors: what the driver raises, and which database errors a retry can cure.

:func:`classify` sorts a failed storage call into one of four kinds:

- ``"outage"``: the server cannot be reached now (connection refused or reset, the server
  closed the connection, a DNS failure, a timeout, PostgreSQL starting up or shutting down);
  retried for up to ``--storage-retry``.
- ``"busy"``: SQLite's file lock is held by another process (``database is locked``);
  retried for at most :data:`BUSY_SECONDS`, then permanent.
- ``"permanent"``: the database answered and a retry will not change its answer (a read-only
  file, a missing table, a disk I/O error, a full disk, a failed authentication); the driver
  stops at once.
- ``"other"``: not a database failure (Optuna's own errors such as ``KeyError`` or
  ``DuplicatedStudyError``, an integrity error): raised unchanged.
"""

from __future__ import annotations

from typing import Literal

from search.errors import StudyStopped, first_line
from search.exits import DriverExit

Kind = Literal["outage", "busy", "permanent", "other"]

BUSY_SECONDS = 30.0
"""Seconds a SQLite ``database is locked`` is retried (on top of SQLite's own wait for the
lock) before it counts as permanent: another process holds the file."""

_NOT_TRANSIENT = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "authentication",
    "unable to open database file",
)
"""Errors that a restart will not cure because the URL or the server's setup is wrong (for
SQLite: a path whose file cannot be opened)."""

_OUTAGE = (
    "connection refused",
    "connection reset",
    "connection timed out",
    "timeout expired",
    "timed out",
    "server closed the connection",
    "could not connect to server",
    "could not receive data from server",
    "could not send data to server",
    "connection already closed",
    "connection to server",
    "ssl connection has been closed unexpectedly",
    "lost synchronization with server",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "network is unreachable",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "terminating connection due to administrator command",
    "terminating connection due to unexpected postmaster exit",
    "sorry, too many clients already",
)
"""Words of an error that says the server cannot be reached now (lower case)."""

_OUTAGE_CODES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")
"""PostgreSQL SQLSTATEs (or their class) of the same: connection exceptions, an
administrator or crash shutdown, "cannot connect now", too many connections, and a
serialisation failure or deadlock (the transaction was rolled back; running it again works)."""

_BUSY = ("database is locked", "database table is locked")
"""SQLite's words for a file lock held by another connection (lower case)."""


class StorageUnavailable(StudyStopped):
    """The study's database became unusable: it stayed unreachable past the retry bound,
    or it failed in a way no retry cures (exit 6)."""

    def __init__(self, message: str) -> None:
        super().__init__(DriverExit.STORAGE, message)


class StorageBroken(StorageUnavailable):
    """The database answered with a permanent error (a read-only or full disk, a missing
    table, a refused login): the driver stops at once (exit 6)."""


class StorageRefused(ValueError):
    """The database answered but refused us (credentials, a missing database, a bad URL);
    the message is one sentence without the password."""


def classify(exc: BaseException) -> Kind:
    """What a retry can do about ``exc`` (the module's docstring lists the kinds)."""
    from sqlalchemy import exc as sa

    for current in _chain(exc):
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return "outage"
        if isinstance(current, sa.DisconnectionError | sa.TimeoutError):
            return "outage"
        if isinstance(current, sa.IntegrityError | sa.DataError | sa.NotSupportedError):
            return "other"
        if isinstance(current, sa.DBAPIError):
            return _kind_of(current)
    return "other"


def _kind_of(exc: BaseException) -> Kind:
    text = str(getattr(exc, "orig", None) or exc).lower()
    if any(marker in text for marker in _BUSY):
        return "busy"
    if refused(exc):
        return "permanent"
    code = str(getattr(getattr(exc, "orig", None), "pgcode", None) or "")
    if any(marker in text for marker in _OUTAGE) or (code and code.startswith(_OUTAGE_CODES)):
        return "outage"
    return "permanent"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached now."""
    return classify(exc) == "outage"


def refused(exc: BaseException) -> bool:
    """The server answered and refused: a wrong password, user or database name, or URL."""
    from sqlalchemy.exc import ArgumentError

    if isinstance(exc, ArgumentError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _NOT_TRANSIENT)


def creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is what creating the schema concurrently with another client gives: a
    duplicate key (the catalog or the schema version) or a table that already exists."""
    from sqlalchemy import exc as sa

    return isinstance(exc, sa.IntegrityError) or "already exists" in str(exc)


def database_error(exc: BaseException) -> str:
    """The first informative line of a database error (:func:`search.errors.first_line`),
    with SQLAlchemy's ``(driver.Error)`` prefix and its background link dropped."""
    from sqlalchemy import exc as sa

    found = next((e for e in _chain(exc) if isinstance(e, sa.DBAPIError)), exc)
    text = str(found).strip()
    if text.startswith("(") and ") " in text:
        text = text.split(") ", 1)[1]
    return first_line(found, text)
