"""Storage URLs: the driver name, the database a URL names, a URL's password kept secret.

A URL's password is never shown: :func:`describe` names the database by host and port,
and :func:`scrub` removes the password from any message that could quote it.
"""

from __future__ import annotations

import contextlib
import importlib.util
from urllib.parse import quote

from search.storage.errors import StorageRefused

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def postgres_driver(url: str) -> str:
    """Name psycopg2 in a bare ``postgresql://`` URL when psycopg 3 (SQLAlchemy 2.1's default
    driver) is not installed; the project depends on psycopg2-binary."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


def describe(url: str) -> str:
    """The database a URL names, for messages: ``PostgreSQL at host:port (database d)`` or
    ``SQLite file /path``; never the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "the database of the --storage URL (not a valid SQLAlchemy URL)"
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    name = {"postgresql": "PostgreSQL", "mysql": "MySQL"}.get(backend, backend)
    port = parsed.port or _DEFAULT_PORTS.get(backend)
    host = parsed.host or "localhost"
    where = f"{host}:{port}" if port else host
    return f"{name} at {where}" + (f" (database {parsed.database})" if parsed.database else "")


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password (as written and decoded) replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    secrets: set[str] = set()
    with contextlib.suppress(ArgumentError, ValueError):
        password = make_url(url).password
        if password:
            secrets |= {str(password), quote(str(password), safe="")}
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo:
        secrets.add(userinfo.partition(":")[2])
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def check_url(url: str) -> None:
    """Refuse a URL SQLAlchemy cannot parse, without quoting it (it may hold a password)."""
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except Exception:
        raise StorageRefused(
            "the --storage URL is not a valid SQLAlchemy URL; write it as "
            "dialect+driver://user:password@host:port/database (percent-encode @ and : in "
            "the password)."
        ) from None
