"""Exactly-once writes: each write that a retry could apply twice carries a token, written
in the same transaction as the write itself.

A commit whose reply is lost (a failover, a connection dropped at COMMIT) leaves the client
unsure whether the write happened. Before the retry runs the write again, it looks for the
token: found, the write committed, and the retry returns what the write would have returned
(the new study's or trial's id; True for a state change) instead of applying it twice.

The tokens live in a table of their own, ``resnet_job_write_tokens`` (token, id of the row
the write created or changed), beside Optuna's tables; Optuna never reads it. The token row
is added by a SQLAlchemy ``after_flush`` hook on the RDB storage's sessions, so it is part of
the transaction Optuna commits, whatever Optuna's code does inside it.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy
from optuna.storages import RDBStorage
from sqlalchemy import event

from search._optuna import rdb_models

Target = Literal["new study", "new trial", "deleted study", "trial"]
"""What a write's token points at: the study or trial it creates, the study it deletes, or
the trial (given) whose state it changes."""

_TABLE = sqlalchemy.Table(
    "resnet_job_write_tokens",
    sqlalchemy.MetaData(),
    sqlalchemy.Column("token", sqlalchemy.String(32), primary_key=True),
    sqlalchemy.Column("ref_id", sqlalchemy.Integer, nullable=False),
)


class Committed(Exception):
    """Raised inside a write that Optuna runs again by itself (its RDB storage retries a
    trial's creation) when the token shows the earlier run committed; ``ref_id`` is the id it
    recorded."""

    def __init__(self, ref_id: int) -> None:
        super().__init__(ref_id)
        self.ref_id = ref_id


@dataclass
class _Pending:
    token: str
    target: Target
    ref_id: int | None
    written_in: object = None  # the session transaction that holds the token row


class Tokens:
    """The write tokens of one RDB storage: create the table, tag writes, find a token."""

    def __init__(self, backend: RDBStorage) -> None:
        self._backend = backend
        self._local = threading.local()  # Optuna's sessions are per thread, so is a write
        self.available = _create_table(backend)
        if self.available:
            event.listen(backend.scoped_session, "after_flush", self._after_flush)

    @staticmethod
    def new() -> str:
        """A fresh token."""
        return uuid.uuid4().hex

    @contextlib.contextmanager
    def tagging(self, token: str, target: Target, ref_id: int | None = None) -> Iterator[None]:
        """Within the block, the first flush of a transaction that creates, changes or
        deletes the ``target`` row writes ``token`` with that row's id."""
        self._local.pending = _Pending(token, target, ref_id)
        try:
            yield
        finally:
            self._local.pending = None

    def find(self, token: str) -> int | None:
        """The id the write of ``token`` recorded, or None when it never committed."""
        with self._backend.engine.connect() as connection:
            found = connection.execute(_select(token)).scalar()
        return None if found is None else int(found)

    def _after_flush(self, session: Any, _context: Any) -> None:
        pending: _Pending | None = getattr(self._local, "pending", None)
        if pending is None:
            return
        transaction = session.get_transaction()
        if pending.written_in is transaction:
            return
        if pending.written_in is not None:  # a new transaction of the same write
            found = session.connection().execute(_select(pending.token)).scalar()
            if found is not None:
                raise Committed(int(found))
        ref_id = _target_id(session, pending)
        if ref_id is None:
            return
        session.connection().execute(_TABLE.insert().values(token=pending.token, ref_id=ref_id))
        pending.written_in = transaction


def _create_table(backend: RDBStorage) -> bool:
    """Create the token table if it is missing; False when this database will not let us
    (a read-only copy of a study made before the table existed, a role that may only read):
    such a storage can be read, and its writes fail anyway."""
    from search.storage.errors import classify

    try:
        _TABLE.metadata.create_all(backend.engine)
    except Exception as exc:
        if classify(exc) != "permanent":
            raise
        return False
    return True


def _select(token: str) -> Any:  # a Select of one int column
    return sqlalchemy.select(_TABLE.c.ref_id).where(_TABLE.c.token == token)


def _target_id(session: Any, pending: _Pending) -> int | None:
    """The id of the row the pending write touches in this flush, or None if it touches none."""
    models = rdb_models()
    if pending.target == "trial":
        touched = [*session.new, *session.dirty]
        return pending.ref_id if touched else None
    rows, model, key = {
        "new study": (session.new, models.StudyModel, "study_id"),
        "new trial": (session.new, models.TrialModel, "trial_id"),
        "deleted study": (session.deleted, models.StudyModel, "study_id"),
    }[pending.target]
    return next((int(getattr(row, key)) for row in rows if isinstance(row, model)), None)
