"""The bounded TPE sampler: what history it hands TPE, and that a study within the bound is
sampled exactly as by Optuna's own TPE."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search._optuna import quiet_experimental
from search.space import DEFAULT_SPACE, build_space
from search.study.create import make_sampler
from search.tpe import BEST, RECENT, BoundedTPESampler, bounded

SPACE = build_space(DEFAULT_SPACE)


def _history(finished: int, running: int = 0, seed: int = 0) -> list[FrozenTrial]:
    """``finished`` trials (every third pruned), then ``running`` ones, numbered in order."""
    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    for number in range(finished + running):
        trial = study.ask()
        SPACE.suggest(trial)
        if number >= finished:
            continue
        if number % 3 == 2:
            trial.report(rng.random(), 1)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, rng.random())
    return study.get_trials(deepcopy=False)


@pytest.mark.parametrize("finished", [0, 10, BEST + RECENT])
def test_a_history_within_the_bound_is_kept_whole(finished: int) -> None:
    trials = _history(finished, running=4)
    assert bounded(trials, StudyDirection.MAXIMIZE) == trials


def test_a_longer_history_keeps_the_running_the_best_and_the_latest() -> None:
    trials = _history(600, running=8)
    kept = bounded(trials, StudyDirection.MAXIMIZE)
    numbers = {t.number for t in kept}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = sorted(complete, key=lambda t: t.value or 0.0, reverse=True)[:BEST]
    finished = [t for t in trials if t.state != TrialState.RUNNING]
    assert {t.number for t in trials if t.state == TrialState.RUNNING} <= numbers
    assert {t.number for t in best} <= numbers
    assert {t.number for t in finished[-RECENT:]} <= numbers
    assert len(numbers) <= 8 + BEST + RECENT
    assert [t.number for t in kept] == sorted(numbers)  # in the study's order


@pytest.mark.parametrize("direction", [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE])
def test_the_best_follow_the_studys_direction(direction: StudyDirection) -> None:
    trials = _history(600)
    kept = {t.number for t in bounded(trials, direction)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max if direction == StudyDirection.MAXIMIZE else min
    assert best(complete, key=lambda t: t.value or 0.0).number in kept


def test_make_sampler_builds_the_bounded_tpe() -> None:
    assert isinstance(make_sampler("tpe", 0), BoundedTPESampler)


def _suggestions(sampler: optuna.samplers.BaseSampler, history: list[FrozenTrial]) -> list:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials(history)
    out = []
    for _ in range(5):
        trial = study.ask()
        out.append(SPACE.suggest(trial))
        study.tell(trial, 0.5)
    return out


def test_within_the_bound_it_suggests_what_optunas_tpe_suggests() -> None:
    history = _history(60)
    with quiet_experimental():
        plain = optuna.samplers.TPESampler(seed=3, constant_liar=True, n_startup_trials=5)
        ours = BoundedTPESampler(seed=3, constant_liar=True, n_startup_trials=5)
    assert _suggestions(ours, history) == _suggestions(plain, history)


def test_beyond_the_bound_it_suggests_within_the_space() -> None:
    with quiet_experimental():
        sampler = BoundedTPESampler(seed=3, constant_liar=True, n_startup_trials=5)
    for params in _suggestions(sampler, _history(400)):
        for name, value in params.items():
            assert SPACE.distributions[name]._contains(
                SPACE.distributions[name].to_internal_repr(value)
            )
