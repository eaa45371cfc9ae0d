"""The one place that reaches into Optuna's private parts, and why.

The driver runs each trial's job in another process (a container, a pod) and records the
trial's heartbeat from its own thread, so that the budget stays exact: a trial counts as
running from the moment it is asked for until it is told, whoever runs it. Optuna only does
this inside ``Study.optimize``, and offers no public name for what it needs:

- a trial's storage id (``Trial._trial_id``), which heartbeats and system attributes take;
- the RDB storage's SQLAlchemy models (``optuna.storages._rdb.models``), which
  :mod:`search.storage.tokens` recognises in a session to tag a write with its token;
- the heartbeat interface (``optuna.storages._heartbeat.BaseHeartbeat``), which
  :class:`search.storage.RetryingStorage` implements so that ``fail_stale_trials`` and the
  heartbeat callbacks keep working through it (they call its ``_get_stale_trial_ids``), and
  ``FrozenStudy`` (``optuna.study._frozen``), a type in the storage interface it forwards;
- Optuna's cache of an RDB storage (``optuna.storages._CachedStorage``), which
  :mod:`search.storage` puts under its retry loop for reads of a study's trials;
- TPE's ``_sample`` and ``Study._get_trials``, which :mod:`search.tpe` wraps to bound the
  history TPE reads.

Keeping every such access here means an Optuna upgrade that renames them breaks this module
(and ``tests/search/test_storage.py``), not the driver.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from types import ModuleType

import optuna
from optuna.storages import _CachedStorage as CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial

__all__ = [
    "BaseHeartbeat",
    "CachedStorage",
    "FrozenStudy",
    "quiet_experimental",
    "rdb_models",
    "trial_id",
]


def rdb_models() -> ModuleType:
    """The RDB storage's SQLAlchemy models (imported on use: they import SQLAlchemy)."""
    from optuna.storages._rdb import models

    return models


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
