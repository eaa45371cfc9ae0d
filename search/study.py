"""The study factory: storage, sampler and pruner, and opening a study by name.

``run`` opens (or creates) the study through :func:`open_study`; ``best``, ``report`` and
``dashboard`` only read it, through :func:`load_study`.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search._optuna import quiet_experimental
from search.storage import make_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states that count toward the budget."""


def open_study(
    storage_url: str,
    study_name: str,
    *,
    pruner: str = "median",
    sampler: str = "tpe",
    seed: int | None = None,
    heartbeat: int = 10,
    retries: int = 2,
) -> optuna.Study:
    """Create or load the study (maximising ``val_acc``) on a crash-safe RDB storage.

    The storage records a heartbeat for every running trial; a trial whose driver stops
    beating is failed and its parameters are queued again (up to ``retries`` times).
    """
    return optuna.create_study(
        storage=make_storage(storage_url, heartbeat=heartbeat, retries=retries),
        study_name=study_name,
        direction="maximize",
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )


def load_study(storage_url: str, study_name: str) -> optuna.Study:
    """Load an existing study to read it; KeyError when the storage has no such study."""
    return optuna.load_study(study_name=study_name, storage=make_storage(storage_url))


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """``tpe`` (constant liar, for parallel trials) or ``random``."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with quiet_experimental():
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (from epoch 2, once 2 trials finished), ``hyperband`` or ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()
