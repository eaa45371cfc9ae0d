"""Storage errors: what the driver raises, and which database errors a retry can cure."""

from __future__ import annotations

from job.contract import DriverExit
from search.errors import StudyStopped, first_line

_NOT_TRANSIENT = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "authentication",
)
"""Connection errors that a restart will not cure: the URL or the server's setup is wrong."""


class StorageUnavailable(StudyStopped):
    """The study's database stayed unreachable past the retry bound (exit 6)."""

    def __init__(self, message: str) -> None:
        super().__init__(DriverExit.STORAGE, message)


class StorageRefused(ValueError):
    """The database answered but refused us (credentials, a missing database, a bad URL);
    the message is one sentence without the password."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached."""
    from sqlalchemy import exc as sa

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError):
            return not refused(current)
        current = current.__cause__ or current.__context__
    return False


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
    text = str(exc).strip()
    if text.startswith("(") and ") " in text:
        text = text.split(") ", 1)[1]
    return first_line(exc, text)
