"""The study's database: an Optuna RDB storage that rides out database restarts.

:func:`make_storage` opens the database named by a URL (PostgreSQL for several drivers,
SQLite by default) and returns a :class:`RetryingStorage`: every storage call that fails
because the database cannot be reached (a PostgreSQL pod rescheduled, a failover, a
maintenance restart) is retried with backoff until the database answers again, for at most
``retry_seconds`` per outage. Past that bound the call raises :class:`StorageUnavailable`
(the driver exits :attr:`~job.contract.DriverExit.STORAGE`), and every later call fails at
once, so a stopping driver does not wait out the bound again for each trial.

Creating the schema and the study is serialised between drivers that start at the same
moment on an empty database: a PostgreSQL advisory lock, or a lock file beside a SQLite
database, is held while one of them creates it. A client that does not take the lock (plain
Optuna, another tool) can still race us; losing such a race is retried a few times.

A URL's password is never shown: :func:`describe` names the database by host and port,
and :func:`scrub` removes the password from any message that could quote it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import threading
import time
import zlib
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from job.contract import DriverExit
from search._optuna import BaseHeartbeat, FrozenStudy, quiet_experimental
from search.errors import StudyStopped, first_line

log = logging.getLogger("search")

_P = ParamSpec("_P")
_R = TypeVar("_R")

DEFAULT_RETRY_SECONDS = 300.0
"""How long (seconds) one database outage is ridden out before the driver gives up."""

_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0
"""The shortest and the longest wait between two attempts, in seconds."""

_CREATION_LOCK = zlib.crc32(b"resnet-job: optuna schema and study creation")
"""PostgreSQL advisory lock key held while a driver creates the schema or the study."""

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


def postgres_driver(url: str) -> str:
    """Name psycopg2 in a bare ``postgresql://`` URL when psycopg 3 (SQLAlchemy 2.1's default
    driver) is not installed; the project depends on psycopg2-binary."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


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


def make_storage(
    url: str,
    *,
    heartbeat: int = 10,
    retries: int = 2,
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
) -> RetryingStorage:
    """Open the database at ``url`` as a :class:`RetryingStorage` whose RDB storage records a
    heartbeat per running trial (every ``heartbeat`` s) and queues a stale trial again, up to
    ``retries`` times.

    A PostgreSQL server that cannot be reached is retried for up to ``retry_seconds``, then
    :class:`StorageUnavailable`; a server that refuses us, a bad URL or an unusable SQLite
    path raises :class:`StorageRefused` at once.
    """
    url = postgres_driver(url)
    _check_url(url)
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if sqlite:
        kwargs = {"connect_args": {"timeout": 120}}  # seconds to wait for SQLite's file lock

    def create() -> RDBStorage:
        with quiet_experimental():
            return RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=Requeue(retries),
            )

    outage = _Outage(url, retry_seconds)
    races = 0
    while True:
        try:
            with creation_lock(url):
                backend = create()
            break
        except Exception as exc:
            if _creation_race(exc) and races < _CREATION_RACES:
                races += 1  # a client outside the lock created the schema at the same time
                time.sleep(_BACKOFF_FIRST * races)
                continue
            if _refused(exc) or sqlite or not _unreachable(exc):
                raise StorageRefused(_refusal(url, exc)) from None
            outage.failed(exc, starting=True)
    return RetryingStorage(backend, url, outage)


_CREATION_RACES = 5
"""Attempts to open the storage again after losing a race to create the schema."""


def _creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is what creating the schema concurrently with another client gives: a
    duplicate key (the catalog or the schema version) or a table that already exists."""
    from sqlalchemy import exc as sa

    return isinstance(exc, sa.IntegrityError) or "already exists" in str(exc)


def _check_url(url: str) -> None:
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


def _refusal(url: str, exc: BaseException) -> str:
    return f"cannot open the study's database, {describe(url)}: {scrub(_first_line(exc), url)}."


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold the lock that serialises schema and study creation on the database at ``url``.

    PostgreSQL: a session advisory lock on a connection of its own (released with it, even if
    this process dies). SQLite: an exclusive lock on ``<file>.lock``. Other databases: none
    (creation is retried on the integrity error instead).
    """
    if url.startswith("sqlite"):
        database = url.partition(":///")[2]
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


def create_or_load_study(
    storage: RetryingStorage,
    study_name: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    first_params: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Create the study (maximising) or load it if another driver already did, under the
    creation lock; retried while the database is unreachable. A new study gets
    ``first_params`` as its first trial, queued under the same lock, so drivers starting
    together queue it once."""

    def create() -> optuna.Study:
        with creation_lock(storage.url):
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
            if first_params is not None and not study.get_trials(deepcopy=False):
                study.enqueue_trial(dict(first_params))
            return study

    return storage.call(create)


class Requeue:
    """Queue a failed trial's parameters again as a new WAITING trial, up to ``retries``
    times per original trial (Optuna's retry callback, which records the retry history).

    The new trial starts with no user attributes: everything in them (its driver, exit code,
    failure) describes one run, and a stale ``driver`` would make it look orphaned.
    """

    def __init__(self, retries: int) -> None:
        with quiet_experimental():
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=retries)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue ``trial``'s parameters again (nothing when its retries are used up)."""
        fresh = copy.copy(trial)
        fresh.user_attrs = {}
        self._retry(study, fresh)


class _Outage:
    """The state of the connection to one database, shared by every thread that uses it:
    when the current outage began, when the database last came back, whether we gave up."""

    def __init__(self, url: str, retry_seconds: float) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._since: float | None = None
        self.reachable_since = time.monotonic()
        self.given_up = False

    def failed(self, exc: BaseException, *, starting: bool = False) -> None:
        """Record a failed attempt: wait before the next one, or raise StorageUnavailable once
        the outage has lasted ``retry_seconds``."""
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
                log.warning(
                    "the study's database, %s, cannot be reached (%s); retrying for up to %g s",
                    describe(self.url),
                    scrub(_first_line(exc), self.url),
                    self.retry_seconds,
                )
            lasted = now - self._since
            if self.given_up or lasted >= self.retry_seconds:
                self.given_up = True
                raise StorageUnavailable(self._sentence(exc, starting)) from None
        # Back off with the outage's age: half of it so far, between the two bounds.
        pause = min(_BACKOFF_MAX, max(_BACKOFF_FIRST, lasted / 2))
        time.sleep(max(0.0, min(pause, self.retry_seconds - lasted)))

    def succeeded(self) -> None:
        """Record a call that reached the database: an outage, if any, is over."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            log.warning(
                "the study's database, %s, is reachable again after %.0f s",
                describe(self.url),
                time.monotonic() - self._since,
            )
            self._since = None
            self.reachable_since = time.monotonic()

    def _sentence(self, exc: BaseException, starting: bool) -> str:
        what = "could not be reached" if starting else "stayed unreachable"
        then = (
            "check that it runs and that --storage names it, then rerun."
            if starting
            else "the running trials were stopped (checkpointed) and resume when you rerun "
            "the same command once it is back."
        )
        return (
            f"the study's database, {describe(self.url)}, {what} for "
            f"{self.retry_seconds:g} s ({scrub(_first_line(exc), self.url)}); {then}"
        )


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage that forwards every call to an :class:`RDBStorage` and retries a
    call that failed because the database could not be reached.

    Optuna only ever calls a storage through the methods of ``BaseStorage`` and
    ``BaseHeartbeat``; each is forwarded with :meth:`_retry`.
    """

    def __init__(self, backend: RDBStorage, url: str, outage: _Outage) -> None:
        self.backend = backend
        self.url = url
        self.outage = outage

    @property
    def reachable_since(self) -> float:
        """``time.monotonic()`` when the database last came back (or was opened)."""
        return self.outage.reachable_since

    @property
    def grace_period(self) -> int:
        """Seconds without a heartbeat after which a running trial is stale."""
        return int(self.backend.grace_period or 2 * (self.backend.heartbeat_interval or 0))

    def call(self, function: Callable[[], _R]) -> _R:
        """Run ``function`` (which uses this storage), retrying it as a whole while the
        database is unreachable, up to the bound."""
        return self._retry(function)

    def _retry(self, method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """``method(*args, **kwargs)``, retried while the database is unreachable."""
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                self.outage.failed(exc)
                continue
            self.outage.succeeded()
            return result

    def _retry_state(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """``set_trial_state_values``, retried; a retry that finds the trial already in
        ``state`` counts as done (the first attempt committed before the connection dropped)."""
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return self.backend.set_trial_state_values(trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                if attempts > 1 and self.backend.get_trial(trial_id).state == state:
                    return True
                raise

        return self._retry(attempt)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RetryingStorage cannot be pickled; open the URL in each process")

    # -- BaseStorage and BaseHeartbeat: every method forwarded to the RDB storage ----------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self._retry(self.backend.create_new_study, directions, study_name)

    def delete_study(self, study_id: int) -> None:
        return self._retry(self.backend.delete_study, study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_study_user_attr, study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_study_system_attr, study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._retry(self.backend.get_study_id_from_name, study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._retry(self.backend.get_study_name_from_id, study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._retry(self.backend.get_study_directions, study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_study_user_attrs, study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_study_system_attrs, study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._retry(self.backend.get_all_studies)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._retry(self.backend.create_new_trial, study_id, template_trial)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        return self._retry(
            self.backend.set_trial_param, trial_id, param_name, param_value_internal, distribution
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._retry(
            self.backend.get_trial_id_from_study_id_trial_number, study_id, trial_number
        )

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._retry(self.backend.get_trial_number_from_id, trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self._retry(self.backend.get_trial_param, trial_id, param_name)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self._retry_state(trial_id, state, values)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        return self._retry(
            self.backend.set_trial_intermediate_value, trial_id, step, intermediate_value
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_trial_user_attr, trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_trial_system_attr, trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._retry(self.backend.get_trial, trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._retry(self.backend.get_all_trials, study_id, deepcopy, states)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        return self._retry(self.backend.get_n_trials, study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._retry(self.backend.get_best_trial, study_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_trial_params, trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_trial_user_attrs, trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_trial_system_attrs, trial_id)

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        return self._retry(self.backend.check_trial_is_updatable, trial_id, trial_state)

    def remove_session(self) -> None:
        return self._retry(self.backend.remove_session)

    def record_heartbeat(self, trial_id: int) -> None:
        return self._retry(self.backend.record_heartbeat, trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._retry(self.backend._get_stale_trial_ids, study_id)

    def get_heartbeat_interval(self) -> int | None:
        return self._retry(self.backend.get_heartbeat_interval)

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry(self.backend.get_heartbeat_stale_trial_callback)

    def get_failed_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry(self.backend.get_failed_trial_callback)


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached."""
    from sqlalchemy import exc as sa

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError):
            return not _refused(current)
        current = current.__cause__ or current.__context__
    return False


def _refused(exc: BaseException) -> bool:
    """The server answered and refused: a wrong password, user or database name, or URL."""
    from sqlalchemy.exc import ArgumentError

    if isinstance(exc, ArgumentError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _NOT_TRANSIENT)


def _first_line(exc: BaseException) -> str:
    """The first informative line of a database error: SQLAlchemy's ``(driver.Error)`` prefix
    and its background link dropped."""
    text = str(exc).strip()
    if text.startswith("(") and ") " in text:
        text = text.split(") ", 1)[1]
    return first_line(exc, text)
