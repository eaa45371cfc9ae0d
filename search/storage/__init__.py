"""The study's database: an Optuna RDB storage that rides out database restarts.

:func:`make_storage` opens the database named by a URL (PostgreSQL for several drivers,
SQLite by default) and returns a :class:`RetryingStorage`: every storage call that fails
because the database cannot be reached (a PostgreSQL pod rescheduled, a failover, a
maintenance restart) is retried with backoff until the database answers again, for at most
``retry_seconds`` per outage. Past that bound the call raises :class:`StorageUnavailable`
(the driver exits :attr:`~search.exits.DriverExit.STORAGE`), and every later call fails at
once, so a stopping driver does not wait out the bound again for each trial. A database that
answers with an error no retry cures (read-only, full, damaged, a missing table) raises
:class:`StorageBroken` (exit 6 too) at once instead.

Writes that a retry could apply twice (creating a study or a trial, deleting a study,
changing a trial's state) are applied exactly once: each carries a token written in its own
transaction, which the retry looks for first (:mod:`~search.storage.tokens`).

Creating the schema and the study is serialised between drivers that start at the same
moment on an empty database: a PostgreSQL advisory lock, or a lock file beside a SQLite
database, is held while one of them creates it. A client that does not take the lock (plain
Optuna, another tool) can still race us; losing such a race is retried a few times.

A URL's password is never shown: :func:`describe` names the database by host and port,
and :func:`scrub` removes the password from any message that could quote it.

The package, by concern: :mod:`~search.storage.urls` (URLs and secrets),
:mod:`~search.storage.create` (opening the database under the creation lock),
:mod:`~search.storage.retrying` (the outage state and the retry loop),
:mod:`~search.storage.forward` (the storage Optuna calls), :mod:`~search.storage.requeue`
(queueing a trial again), :mod:`~search.storage.tokens` (exactly-once writes) and
:mod:`~search.storage.errors` (what a retry can cure).
"""

from __future__ import annotations

from search.storage.create import creation_lock, make_storage, open_storage
from search.storage.errors import StorageBroken, StorageRefused, StorageUnavailable
from search.storage.forward import RetryingStorage
from search.storage.requeue import Requeue
from search.storage.urls import describe, postgres_driver, scrub

__all__ = [
    "Requeue",
    "RetryingStorage",
    "StorageBroken",
    "StorageRefused",
    "StorageUnavailable",
    "creation_lock",
    "describe",
    "make_storage",
    "open_storage",
    "postgres_driver",
    "scrub",
]
