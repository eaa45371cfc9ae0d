"""Opening a study for a driver: one storage, one acquisition of the creation lock.

:func:`open_study` opens the database and, under one acquisition of its creation lock, does
everything a driver start needs before its first trial: with ``--fresh``, keeps an existing
study aside (:mod:`search.study.fresh`); creates the study or loads it; checks that it was
started with the same settings or records them (:mod:`search.study.record`); queues the
baseline as a new study's first trial and then the ``--enqueue`` configurations it does not
hold yet. Drivers starting together therefore create, record and queue each thing once, and
a refused run writes nothing. The study's confirmation runs (its ``.confirm`` sibling) are
created later on the same storage object, when the plan is made
(:mod:`search.study.confirmation`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search.storage import RetryingStorage, open_storage
from search.study.create import create, existing, make_pruner, make_sampler, name_objective
from search.study.fresh import keep, refuse_foreign_folders
from search.study.record import check_or_record, has_results, record_of

if TYPE_CHECKING:
    from search.settings import Settings

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states that count toward the budget."""


@dataclass(frozen=True)
class OpenedStudy:
    """A study opened for a driver: the study, its storage (the one object every later
    call, the confirmation runs' included, goes through) and how many ``--enqueue``
    configurations this start queued."""

    study: optuna.Study
    storage: RetryingStorage
    queued: int = 0


def open_study(settings: Settings, say: Callable[[str], None]) -> OpenedStudy:
    """Open (or create) ``settings.study_name`` in ``settings.storage`` for a driver run.

    The storage records a heartbeat for every running trial; a trial whose driver stops
    beating is failed and its parameters are queued again (up to ``settings.retries``
    times). Calls that find the database unreachable are retried for up to
    ``settings.storage_retry`` (:mod:`search.storage`). ``say`` tells what ``--fresh`` kept.

    Raises SettingsError (exit 2) when the study was started with other settings, or when a
    new study would reuse another study's trial folders; nothing is written then.
    """

    def locked(storage: RetryingStorage) -> OpenedStudy:
        study = _open(storage, settings, say)
        queued = _enqueue(study, settings.enqueue)
        return OpenedStudy(study, storage, queued)

    _, opened = open_storage(
        settings.storage,
        retry_seconds=settings.storage_retry,
        heartbeat=settings.heartbeat,
        retries=settings.retries,
        then=locked,
    )
    return opened


def _open(storage: RetryingStorage, settings: Settings, say: Callable[[str], None]) -> optuna.Study:
    """The study, created (with the baseline queued first) or loaded and checked; run under
    the creation lock."""
    name = settings.study_name
    sampler = make_sampler(settings.sampler, settings.seed)
    pruner = make_pruner(settings.pruner)
    study = existing(storage, name, sampler, pruner)
    if study is not None and settings.fresh and has_results(study):
        keep(storage, study, settings.output, say)
        study = None
    if study is None:
        refuse_foreign_folders(settings.output, name)
        study = create(storage, name, sampler, pruner)
    check_or_record(study, record_of(settings), settings.fresh)
    name_objective(study)  # after the check: a refused run writes nothing
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(dict(settings.space.baseline()))
    return study


def _enqueue(study: optuna.Study, configurations: Sequence[Mapping[str, Any]]) -> int:
    """Queue each ``--enqueue`` configuration the study does not hold yet, in any state (so
    rerunning the same command queues nothing twice); how many were queued."""
    if not configurations:
        return 0
    before = len(study.get_trials(deepcopy=False))
    for params in configurations:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before
