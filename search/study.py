"""The study factory: storage, sampler and pruner, and opening a study by name.

``run`` opens (or creates) the study through :func:`open_study`; ``best``, ``report`` and
``dashboard`` only read it, through :func:`load_study`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from search._optuna import quiet_experimental
from search.settings import DEFAULTS
from search.storage import RetryingStorage, create_or_load_study, make_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states that count toward the budget."""


def open_study(
    storage_url: str,
    study_name: str,
    *,
    pruner: str = DEFAULTS.pruner,
    sampler: str = DEFAULTS.sampler,
    seed: int | None = None,
    heartbeat: int = DEFAULTS.heartbeat,
    retries: int = DEFAULTS.retries,
    retry_seconds: float = DEFAULTS.storage_retry,
    first_params: Mapping[str, Any] | None = None,
) -> tuple[optuna.Study, RetryingStorage]:
    """Create or load the study (maximising ``val_acc``) and return it with its storage; a
    new study's first trial gets ``first_params`` (the baseline).

    The storage records a heartbeat for every running trial; a trial whose driver stops
    beating is failed and its parameters are queued again (up to ``retries`` times). Calls
    that find the database unreachable are retried for up to ``retry_seconds`` (see
    :mod:`search.storage`); drivers starting together on an empty database take turns to
    create the schema and the study.
    """
    storage = make_storage(
        storage_url, heartbeat=heartbeat, retries=retries, retry_seconds=retry_seconds
    )
    study = create_or_load_study(
        storage,
        study_name,
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner),
        first_params=first_params,
    )
    if study.metric_names is None:  # the dashboard then says val_acc, not "Objective 0"
        with quiet_experimental():
            study.set_metric_names(["val_acc"])
    return study, storage


def load_study(
    storage_url: str, study_name: str, *, retry_seconds: float = DEFAULTS.storage_retry
) -> optuna.Study:
    """Load an existing study to read it; KeyError when the storage has no such study."""
    storage = make_storage(storage_url, retry_seconds=retry_seconds)
    return storage.call(lambda: optuna.load_study(study_name=study_name, storage=storage))


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """``tpe`` (constant liar, for parallel trials; its history bounded, so that a trial
    costs it the same at 300 trials as at 3,000: :mod:`search.tpe`) or ``random``."""
    from search.tpe import BoundedTPESampler

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with quiet_experimental():
        return BoundedTPESampler(seed=seed, constant_liar=True, n_startup_trials=5)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (from epoch 2, once 2 trials finished), ``hyperband`` or ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()
