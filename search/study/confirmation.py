"""The confirmation phase's plan: which runs confirm which trials, queued in a sibling study.

After the budget, the top ``K`` COMPLETE configurations and the baseline are each trained
again on ``S - 1`` more seeds; with the trial itself (the study's own seed) every
configuration then has ``S`` runs on the same seeds, so two configurations are compared seed
by seed (:mod:`search.confirm`). The runs are trials of a sibling study, ``<study>.confirm``,
on the study's own storage object: the study's sampler never sees them, and its best trial
stays a single-seed figure. Each run's parameters are the configuration's plus ``confirms``
(the trial number it confirms) and ``seed``, so a run queued again after its driver died
still says what it is.

:func:`plan` is made after the budget (and again when ``--trials`` is raised), each time
under its own acquisition of the creation lock, so drivers finishing together queue each
run once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search._optuna import fixed_params, storage_of
from search.storage import RetryingStorage, creation_lock
from search.study.create import create, existing

SUFFIX = ".confirm"
"""The sibling study's name is the study's plus this."""

CONFIRMS = "confirms"
SEED = "seed"
"""The parameters (and user attributes) naming what a confirmation run confirms, its seed."""

_NUMBER = optuna.distributions.IntDistribution(0, 2**31 - 1)


def sibling_name(study_name: str) -> str:
    """The name of the study holding ``study_name``'s confirmation runs."""
    return study_name + SUFFIX


def seeds(study_seed: int, count: int) -> list[int]:
    """The ``count`` seeds every confirmed configuration runs on: the study's own first, then
    the next whole numbers (deterministic, and distinct from it)."""
    return [study_seed + i for i in range(count)]


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best COMPLETE trials with distinct parameters, best first (ties: lower
    number)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
    chosen: list[FrozenTrial] = []
    for trial in ranked:
        if len(chosen) >= k:
            break
        if all(trial.params != other.params for other in chosen):
            chosen.append(trial)
    return chosen


def configurations(study: optuna.Study, k: int, baseline: FrozenTrial | None) -> list[FrozenTrial]:
    """The trials to confirm: the top ``k`` and the baseline (once, even when among them)."""
    chosen = top_trials(study, k)
    if baseline is not None and all(baseline.params != t.params for t in chosen):
        chosen.append(baseline)
    return chosen


def find_sibling(study: optuna.Study) -> optuna.Study | None:
    """The sibling study, None when the phase never started."""
    return existing(storage_of(study), sibling_name(study.study_name))


def plan(
    study: optuna.Study,
    storage: RetryingStorage,
    k: int,
    seed_list: Sequence[int],
    baseline: FrozenTrial | None,
) -> optuna.Study:
    """Queue every confirmation run the study's current top ``k`` and baseline still lack, and
    record the plan; return the sibling study, created on ``storage`` (the study's).

    Done under the creation lock, so drivers finishing together queue each run once. A run is
    missing when no trial of the sibling (in any state) has its ``confirms`` and ``seed``:
    a run that failed for good is not queued again (its driver's retries are the retries).
    """
    with creation_lock(storage.url):
        # Never pruned, random sampler: every run it holds is queued, none is sampled.
        sibling = create(
            storage,
            sibling_name(study.study_name),
            optuna.samplers.RandomSampler(seed=0),
            optuna.pruners.NopPruner(),
        )
        chosen = configurations(study, k, baseline)
        have = {_identity(t) for t in sibling.get_trials(deepcopy=False)}
        for trial in chosen:
            for seed in seed_list[1:]:
                if (trial.number, seed) not in have:
                    sibling.enqueue_trial({**trial.params, CONFIRMS: trial.number, SEED: seed})
        sibling.set_user_attr(
            "plan",
            {
                "trials": [t.number for t in chosen],
                "baseline": None if baseline is None else baseline.number,
                "seeds": list(seed_list),
            },
        )
    return sibling


def suggest_identity(trial: optuna.Trial) -> tuple[int, int]:
    """A confirmation run's ``confirms`` and ``seed`` (fixed by the plan's queue)."""
    confirms = trial.suggest_int(CONFIRMS, _NUMBER.low, _NUMBER.high)
    seed = trial.suggest_int(SEED, _NUMBER.low, _NUMBER.high)
    trial.set_user_attr(CONFIRMS, confirms)
    trial.set_user_attr(SEED, seed)
    return confirms, seed


def planned(sibling: optuna.Study) -> int:
    """Runs the current plan asks for."""
    spec = sibling.user_attrs.get("plan") or {}
    return len(spec.get("trials", ())) * max(0, len(spec.get("seeds", ())) - 1)


def done(sibling: optuna.Study) -> int:
    """Runs of the current plan that completed (each counted once)."""
    spec = sibling.user_attrs.get("plan") or {}
    wanted = {(n, s) for n in spec.get("trials", ()) for s in spec.get("seeds", ())[1:]}
    return len(wanted & {key(t.params) for t in complete(sibling)})


def key(params: dict[str, Any]) -> tuple[Any, Any]:
    return params.get(CONFIRMS), params.get(SEED)


def _identity(trial: FrozenTrial) -> tuple[Any, Any]:
    """What a run confirms and its seed; a queued run has them only as fixed parameters."""
    return key(trial.params or fixed_params(trial))


def complete(sibling: optuna.Study) -> list[FrozenTrial]:
    """The sibling's COMPLETE runs."""
    return sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
