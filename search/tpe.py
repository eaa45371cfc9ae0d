"""TPE whose work per trial stops growing with the study: the sampler of ``--sampler tpe``.

Optuna's TPE models the study's history as two densities over the parameters: l(x) of the
best trials (the "below" group: 10% of the finished trials, at most 25) and g(x) of all the
others, and each trial costs it time in proportion to the whole history (a kernel per
trial, sorted and split in Python at every ask). :class:`BoundedTPESampler` hands it, at
every ask, every running trial (the constant liar's), the best :data:`BEST` complete trials
of the whole history, and the latest :data:`RECENT` finished ones. Once the study has more
than that, l(x) is the one full-history TPE would build (its 25 best trials are all there,
and a history of at least 250 trials keeps the group at 25), and g(x) is estimated from the
latest trials instead of all of them; a study of up to ``BEST + RECENT`` trials is sampled
exactly as by plain TPE, from the trials the ask read once (see :class:`_Bounded`).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search._optuna import cached_trials

BEST = 25
"""The complete trials kept from the whole history: TPE's largest "below" group."""

RECENT = 250
"""The latest finished trials kept: at least 250, so the "below" group stays at its 25."""


class BoundedTPESampler(optuna.samplers.TPESampler):
    """:class:`optuna.samplers.TPESampler` over a bounded history (see the module).

    It overrides TPE's private ``_sample``, the only place TPE takes the study whose trials
    it reads (:mod:`search._optuna` says why there is no public one)."""

    def _sample(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        return super()._sample(_Bounded(study), trial, search_space)  # type: ignore[arg-type]


class _Bounded:
    """The study as TPE reads it: its trials bounded by :func:`bounded`, all else as is.

    The trials are the ones this ask has already read (the search space's read, which
    Optuna keeps for the ask): with the constant liar, TPE would read the study once more
    for its running trials, a few milliseconds later, at the cost of a storage round trip.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = cached_trials(self._study, deepcopy, states)
        return bounded(trials, self._study.direction)


def bounded(
    trials: list[FrozenTrial], direction: StudyDirection, best: int = BEST, recent: int = RECENT
) -> list[FrozenTrial]:
    """``trials`` (in their order) less the finished ones that are neither among the
    ``best`` complete trials nor among the latest ``recent`` finished ones."""
    finished = [t for t in trials if t.state != TrialState.RUNNING]
    if len(finished) <= best + recent:
        return trials
    complete = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    complete.sort(key=lambda t: float(t.value or 0.0), reverse=direction == StudyDirection.MAXIMIZE)
    latest = sorted(finished, key=lambda t: t.number)[-recent:]
    kept = {t.number for t in complete[:best]} | {t.number for t in latest}
    return [t for t in trials if t.state == TrialState.RUNNING or t.number in kept]
