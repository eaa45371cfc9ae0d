"""The one place that reaches into Optuna's private attributes, and why.

The driver runs each trial's job in another process (a container, a pod) and records the
trial's heartbeat from its own thread, so that the budget stays exact: a trial counts as
running from the moment it is asked for until it is told, whoever runs it. Optuna only does
this inside ``Study.optimize``, and offers no public accessor for what it needs: the study's
storage (``Study._storage``) and a trial's storage id (``Trial._trial_id``). Keeping every such
access here means an Optuna upgrade that renames them breaks this module and its test, not
the driver.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage object the study reads and writes through."""
    return study._storage


def heartbeat_of(study: optuna.Study) -> BaseHeartbeat:
    """The study's storage as the heartbeat interface (RDB storages implement it)."""
    storage = study._storage
    if not isinstance(storage, BaseHeartbeat):
        raise TypeError(f"the study's storage {type(storage).__name__} records no heartbeats")
    return storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (not its number), as heartbeats and system attrs need."""
    return trial._trial_id


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's warnings about the experimental heartbeat API we use on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield
