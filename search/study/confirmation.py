"""The confirmation phase's plan: which runs confirm which trials, round by round, queued in a
sibling study.

After the budget, the top ``K`` COMPLETE configurations other than the baseline (distinct
parameters) and the baseline race over up to ``S`` fresh seeds, the study's seed + 1 … + S
(the study's own seed chose them, so it is set aside). Round ``r`` runs seed ``r`` for the
configurations still in contention after rounds 1 … r − 1 (:func:`search.racing.standing`
replays them from the stored runs; the baseline runs every round), and only once every run
of round r − 1 has finished (COMPLETE or failed for good). The runs are trials of a sibling
study, ``<study>.confirm``, on the study's own storage object: the study's sampler never sees
them, and its best trial stays a single-seed figure. Each run's parameters are the
configuration's plus ``confirms`` (the trial number it confirms) and ``seed``, so a run
queued again after its driver died still says what it is, and which configurations ran in
which round is read from the runs themselves, never stored beside them.

:func:`plan` is made after the budget and again at the end of each round (and when
``--trials`` is raised), each time under its own acquisition of the creation lock, so
drivers finishing together queue each run once; it reuses baseline runs other studies made
(:mod:`search.study.reuse`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import racing
from search._optuna import fixed_params, storage_of
from search.storage import RetryingStorage, creation_lock
from search.study.create import create, existing
from search.study.reuse import REUSED_FROM, Reuse
from search.study.runs import CONFIRMS as CONFIRMS
from search.study.runs import NUMBER as NUMBER
from search.study.runs import SEED as SEED
from search.study.runs import SUFFIX as SUFFIX
from search.study.runs import key as key

PLAN = "plan"
"""The sibling's user attribute recording the plan: ``trials`` (the challengers, then the
baseline), ``baseline``, ``seeds`` (the fresh seeds, in round order) and ``policy``
(``{"configurations": K, "seeds": S}``; a plan without it was made by the phase before
rounds, whose ``seeds`` began with the study's own)."""

_PENDING = (TrialState.WAITING, TrialState.RUNNING)


def sibling_name(study_name: str) -> str:
    """The name of the study holding ``study_name``'s confirmation runs."""
    return study_name + SUFFIX


def seeds(study_seed: int, count: int) -> list[int]:
    """The ``count`` fresh seeds, one per round: the study's seed + 1 … + count (the study's
    own seed chose the configurations, so it is not one of them)."""
    return [study_seed + i for i in range(1, count + 1)]


def challengers(
    study: optuna.Study, k: int, baseline: FrozenTrial | None = None
) -> list[FrozenTrial]:
    """The ``k`` best COMPLETE trials with distinct parameters other than the baseline's,
    best first (ties: lower number)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
    chosen: list[FrozenTrial] = []
    for trial in ranked:
        if len(chosen) >= k:
            break
        others = chosen if baseline is None else [*chosen, baseline]
        if all(trial.params != other.params for other in others):
            chosen.append(trial)
    return chosen


def configurations(study: optuna.Study, k: int, baseline: FrozenTrial) -> list[FrozenTrial]:
    """The trials raced: the top ``k`` challengers, then the baseline."""
    return [*challengers(study, k, baseline), baseline]


def find_sibling(study: optuna.Study) -> optuna.Study | None:
    """The sibling study, None when the phase never started."""
    return existing(storage_of(study), sibling_name(study.study_name))


@dataclass(frozen=True)
class Rounds:
    """Where the race stands, replayed from the stored runs: who ran (or runs) in each round
    so far, and whether the race is settled (no further round)."""

    seeds: tuple[int, ...]
    contending: tuple[tuple[int, ...], ...]
    """The configurations of each round begun, round 1 first (the last one may be running)."""
    settled: bool
    finished: int
    """Rounds whose every run finished (COMPLETE or failed for good)."""

    @property
    def current(self) -> int:
        """The round running now, or the last one when settled (1-based; 0: none)."""
        return len(self.contending)

    def at_most(self) -> int:
        """Runs the race takes at most: those of the rounds begun, and the configurations
        still contending on each seed left."""
        if not self.contending:
            return 0
        left = 0 if self.settled else len(self.seeds) - self.current
        return sum(len(c) for c in self.contending) + len(self.contending[-1]) * left

    def begun(self) -> list[tuple[int, int]]:
        """The (configuration, seed) runs of the rounds begun."""
        return [
            (c, s) for s, group in zip(self.seeds, self.contending, strict=False) for c in group
        ]


def values(runs: Iterable[FrozenTrial], chosen: Iterable[int]) -> dict[int, dict[int, float]]:
    """``values[trial][seed]``: the val_acc of the COMPLETE runs of the ``chosen`` trials (the
    first completed run of a (trial, seed) counts)."""
    wanted = set(chosen)
    found: dict[int, dict[int, float]] = {}
    for t in sorted(runs, key=lambda t: t.number):
        confirms, seed = key(t.params)
        if t.state == TrialState.COMPLETE and t.value is not None and confirms in wanted:
            found.setdefault(confirms, {}).setdefault(seed, t.value)
    return found


def replay(runs: Sequence[FrozenTrial], spec: dict[str, Any]) -> Rounds:
    """The rounds of the plan ``spec`` (the sibling's :data:`PLAN`) that its ``runs`` show."""
    chosen, baseline = list(spec["trials"]), spec["baseline"]
    seed_list = tuple(int(s) for s in spec["seeds"])
    policy = racing.Policy(**spec["policy"])
    scores = values(runs, chosen)
    finished = _finished_keys(runs)
    rounds: list[tuple[int, ...]] = []
    for r, seed in enumerate(seed_list, start=1):
        group = tuple(chosen)
        if r > 1:
            standing = racing.standing(scores, baseline, seed_list[: r - 1], policy)
            if standing.settled:
                return Rounds(seed_list, tuple(rounds), True, r - 1)
            group = standing.contending
        rounds.append(group)
        if any((c, seed) not in finished for c in group):
            return Rounds(seed_list, tuple(rounds), False, r - 1)
    return Rounds(seed_list, tuple(rounds), True, len(rounds))


def _finished_keys(runs: Iterable[FrozenTrial]) -> set[tuple[Any, Any]]:
    """The (configuration, seed) runs that finished: one COMPLETE, or every try failed."""
    tried: dict[tuple[Any, Any], list[TrialState]] = {}
    for t in runs:
        tried.setdefault(_identity(t), []).append(t.state)
    return {
        k
        for k, found in tried.items()
        if TrialState.COMPLETE in found or not any(s in _PENDING for s in found)
    }


def plan(
    study: optuna.Study,
    storage: RetryingStorage,
    policy: racing.Policy,
    seed_list: Sequence[int],
    baseline: FrozenTrial,
) -> tuple[optuna.Study, Rounds]:
    """Record the plan for the study's current top ``policy.configurations`` and queue the
    runs the current round still lacks; return the sibling study (created on ``storage``,
    the study's) and the rounds as they stand.

    Done under the creation lock, so drivers finishing together queue each run once. A run
    is missing when no trial of the sibling (in any state) has its ``confirms`` and ``seed``:
    a run that failed for good is not queued again (its driver's retries are the retries).
    A baseline run another study already made is copied instead (:mod:`search.study.reuse`).
    """
    with creation_lock(storage.url):
        # Never pruned, random sampler: every run it holds is queued, none is sampled.
        sibling = create(
            storage,
            sibling_name(study.study_name),
            optuna.samplers.RandomSampler(seed=0),
            optuna.pruners.NopPruner(),
        )
        chosen = configurations(study, policy.configurations, baseline)
        spec = {
            "trials": [t.number for t in chosen],
            "baseline": baseline.number,
            "seeds": list(seed_list),
            "policy": {"configurations": policy.configurations, "seeds": policy.seeds},
        }
        sibling.set_user_attr(PLAN, spec)
        reuse = Reuse(study, storage, baseline)
        while True:
            runs = sibling.get_trials(deepcopy=False)
            rounds = replay(runs, spec)
            if rounds.settled or not _queue(sibling, rounds, runs, chosen, reuse):
                return sibling, rounds


def _queue(
    sibling: optuna.Study,
    rounds: Rounds,
    runs: Sequence[FrozenTrial],
    chosen: Sequence[FrozenTrial],
    reuse: Reuse,
) -> bool:
    """Queue the current round's missing runs (a reusable baseline run is copied instead);
    True when every one of them was copied (the round may be over: replay it again)."""
    have = {_identity(t) for t in runs}
    seed = rounds.seeds[rounds.current - 1]
    by_number = {t.number: t for t in chosen}
    missing = [n for n in rounds.contending[-1] if (n, seed) not in have]
    queued = False
    for number in missing:
        found = reuse.source(seed) if number == reuse.baseline.number else None
        if found is not None:
            reuse.copy(sibling, *found, seed)
            continue
        sibling.enqueue_trial({**by_number[number].params, CONFIRMS: number, SEED: seed})
        queued = True
    return bool(missing) and not queued


def suggest_identity(trial: optuna.Trial) -> tuple[int, int]:
    """A confirmation run's ``confirms`` and ``seed`` (fixed by the plan's queue)."""
    confirms = trial.suggest_int(CONFIRMS, NUMBER.low, NUMBER.high)
    seed = trial.suggest_int(SEED, NUMBER.low, NUMBER.high)
    trial.set_user_attr(CONFIRMS, confirms)
    trial.set_user_attr(SEED, seed)
    return confirms, seed


def standing_of(sibling: optuna.Study) -> Rounds | None:
    """The rounds the sibling's runs show (None: no plan with rounds recorded)."""
    spec = sibling.user_attrs.get(PLAN) or {}
    if "policy" not in spec:
        return None
    return replay(sibling.get_trials(deepcopy=False), spec)


@dataclass(frozen=True)
class Tally:
    """What a progress line says of the race: its fresh seeds (one per round), the runs
    finished and the runs the race takes at most."""

    seeds: tuple[int, ...]
    done: int
    at_most: int

    def round_of(self, seed: int) -> int:
        """The round that runs ``seed`` (1-based; 0: not a seed of the race)."""
        return self.seeds.index(seed) + 1 if seed in self.seeds else 0


def tally(sibling: optuna.Study) -> Tally | None:
    """The race's :class:`Tally` from the sibling's runs (None: no plan with rounds)."""
    spec = sibling.user_attrs.get(PLAN) or {}
    if "policy" not in spec:
        return None
    runs = sibling.get_trials(deepcopy=False)
    rounds = replay(runs, spec)
    finished = _finished_keys(runs)
    done = sum(k in finished for k in rounds.begun())
    return Tally(rounds.seeds, done, rounds.at_most())


def reused(runs: Iterable[FrozenTrial]) -> int:
    """How many of ``runs`` were copied from another study."""
    return sum(REUSED_FROM in t.user_attrs for t in runs)


def _identity(trial: FrozenTrial) -> tuple[Any, Any]:
    """What a run confirms and its seed; a queued run has them only as fixed parameters."""
    return key(trial.params or fixed_params(trial))


def complete(sibling: optuna.Study) -> list[FrozenTrial]:
    """The sibling's COMPLETE runs."""
    return sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
