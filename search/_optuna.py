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
- a study's storage object (``Study._storage``), which the confirmation runs' sibling study
  and a reader of it share with the study (:mod:`search.study`);
- the parameters a queued trial will take (its ``fixed_params`` system attribute), which say
  what a queued confirmation run confirms before any driver has taken it;
- ``Distribution._contains``, which tells whether a value is one a distribution can suggest
  (an ``--enqueue`` configuration inside the space, :mod:`search.space`);
- ``Study._get_trials`` with ``use_cache``, the trials an ask has already read, which
  :mod:`search.tpe` hands TPE (:func:`cached_trials`).

One subclass must override a private method: :class:`search.tpe.BoundedTPESampler`
overrides ``TPESampler._sample``, the one method every TPE ask goes through with the study
it reads, to hand it a study whose history is bounded; that study (``search.tpe._Bounded``)
answers ``Study._get_trials``, the method TPE reads the trials through. Optuna has no public
hook there: a sampler's public ``sample_relative``/``sample_independent`` take the study
too, but TPE reads the trials again inside ``_sample``.

Keeping every such access here means an Optuna upgrade that renames them breaks this module
(and ``tests/search/test_storage.py``), not the driver.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Container, Iterator
from types import ModuleType
from typing import Any

import optuna
from optuna.storages import _CachedStorage as CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "BaseHeartbeat",
    "CachedStorage",
    "FrozenStudy",
    "cached_trials",
    "contains",
    "fixed_params",
    "quiet_experimental",
    "rdb_models",
    "storage_of",
    "trial_id",
]


def rdb_models() -> ModuleType:
    """The RDB storage's SQLAlchemy models (imported on use: they import SQLAlchemy)."""
    from optuna.storages._rdb import models

    return models


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (not its number), as heartbeats and system attrs need."""
    return trial._trial_id


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object ``study`` was opened on (ours: a RetryingStorage)."""
    return study._storage


def fixed_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a queued (WAITING) trial will take, as ``enqueue_trial`` fixed them."""
    return dict(trial.system_attrs.get("fixed_params") or {})


def contains(dist: optuna.distributions.BaseDistribution, internal: float) -> bool:
    """Whether ``dist`` can suggest the value whose internal representation is ``internal``."""
    return bool(dist._contains(internal))


def cached_trials(
    study: optuna.Study, deepcopy: bool, states: Container[TrialState] | None
) -> list[FrozenTrial]:
    """The study's trials as the current ask has already read them (no storage round trip)."""
    return study._get_trials(deepcopy, states, use_cache=True)


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's warnings about the experimental heartbeat API we use on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield
