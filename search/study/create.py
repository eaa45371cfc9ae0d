"""Creating and loading studies: the one call of ``optuna.create_study`` in the search, and the
samplers and pruners a study is opened with."""

from __future__ import annotations

import optuna

from search._optuna import quiet_experimental
from search.storage import RetryingStorage, make_storage


def create(
    storage: optuna.storages.BaseStorage,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Create the study ``name`` (maximising ``val_acc``) on ``storage``, or load it when it
    exists (a client outside the creation lock may have made it)."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    name_objective(study)
    return study


def name_objective(study: optuna.Study) -> None:
    """Name the objective ``val_acc`` where the study does not name it yet (one made before
    names, or by Optuna alone): the dashboard then says val_acc, not "Objective 0"."""
    if study.metric_names is None:
        with quiet_experimental():
            study.set_metric_names(["val_acc"])


def existing(
    storage: optuna.storages.BaseStorage,
    name: str,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study | None:
    """The study ``name`` on ``storage``, None when there is none."""
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        return None


def load_study(storage_url: str, study_name: str, *, retry_seconds: float) -> optuna.Study:
    """Load an existing study to read it (``best``, ``report``); KeyError when the storage
    has no such study. Database outages are ridden out for ``retry_seconds``."""
    storage: RetryingStorage = make_storage(storage_url, retry_seconds=retry_seconds)
    study = storage.call(lambda: existing(storage, study_name))
    if study is None:
        raise KeyError(study_name)
    return study


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
