"""The storage's read cache and its counts: two storages on one database (two drivers), on
SQLite and on PostgreSQL. Each sees the other's writes at its next read, a finished trial is
loaded once and kept, and counts by state come from the database, exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search._optuna import quiet_experimental, trial_id
from search.storage import RetryingStorage, make_storage
from tests.search.storage.conftest import new_database

STUDY = "shared"


@pytest.fixture(params=["sqlite", "postgresql"])
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RetryingStorage, ...]]:
    """Two storages (two drivers' views) of one new database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        url = new_database(request.getfixturevalue("server"))
    storages = (make_storage(url, retry_seconds=30), make_storage(url, retry_seconds=30))
    yield storages
    for storage in storages:
        storage.backend.engine.dispose()


def _study(storage: RetryingStorage) -> optuna.Study:
    with quiet_experimental():
        return optuna.create_study(storage=storage, study_name=STUDY, load_if_exists=True)


def _ask(study: optuna.Study) -> optuna.Trial:
    with quiet_experimental():
        return study.ask()


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_a_storage_sees_the_trials_another_one_created(two: tuple[RetryingStorage, ...]) -> None:
    mine, theirs = _study(two[0]), _study(two[1])
    assert _states(mine) == []  # read (and cached) before the other driver writes
    theirs.tell(_ask(theirs), 0.5)
    _ask(theirs)
    assert _states(mine) == [TrialState.COMPLETE, TrialState.RUNNING]


def test_a_storage_sees_another_one_finish_a_trial_it_saw_running(
    two: tuple[RetryingStorage, ...],
) -> None:
    mine, theirs = _study(two[0]), _study(two[1])
    trial = _ask(theirs)
    trial.report(0.25, step=1)
    assert _states(mine) == [TrialState.RUNNING]
    trial.set_user_attr("epochs", 1)
    theirs.tell(trial, 0.75)
    (seen,) = mine.get_trials(deepcopy=False)
    assert (seen.state, seen.value, seen.intermediate_values, seen.user_attrs) == (
        TrialState.COMPLETE,
        0.75,
        {1: 0.25},
        {"epochs": 1},
    )


def test_a_finished_trial_is_loaded_once_a_running_one_at_every_read(
    two: tuple[RetryingStorage, ...],
) -> None:
    mine, theirs = _study(two[0]), _study(two[1])
    theirs.tell(_ask(theirs), 0.5)
    _ask(theirs)
    finished, running = mine.get_trials(deepcopy=False)
    again = mine.get_trials(deepcopy=False)
    assert again[0] is finished  # kept: a finished trial never changes
    assert again[1] is not running  # loaded again: it may have changed


def test_a_storage_sees_another_one_fail_a_trial_it_ran(two: tuple[RetryingStorage, ...]) -> None:
    mine, theirs = _study(two[0]), _study(two[1])
    trial = _ask(mine)
    assert _states(mine) == [TrialState.RUNNING]
    assert two[1].set_trial_state_values(trial_id(trial), TrialState.FAIL)  # a reaper
    assert _states(mine) == [TrialState.FAIL]
    assert mine.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) == []
    assert theirs.get_trials(deepcopy=False)[0].state == TrialState.FAIL


def test_state_counts_are_exact_across_storages(two: tuple[RetryingStorage, ...]) -> None:
    mine, theirs = _study(two[0]), _study(two[1])
    theirs.tell(_ask(theirs), 0.5)
    theirs.tell(_ask(theirs), state=TrialState.PRUNED)
    _ask(theirs)
    theirs.enqueue_trial({"x": 0.5})
    counts = two[0].state_counts(mine._study_id)
    assert counts == {
        TrialState.COMPLETE: 1,
        TrialState.PRUNED: 1,
        TrialState.RUNNING: 1,
        TrialState.WAITING: 1,
    }


@pytest.mark.parametrize(
    "state",
    [None, TrialState.RUNNING, (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.FAIL,)],
)
def test_get_n_trials_counts_what_get_all_trials_lists(
    two: tuple[RetryingStorage, ...], state: TrialState | tuple[TrialState, ...] | None
) -> None:
    study = _study(two[0])
    study.tell(_ask(study), 0.5)
    study.tell(_ask(study), state=TrialState.PRUNED)
    _ask(study)
    states = (state,) if isinstance(state, TrialState) else state
    listed = two[1].get_all_trials(study._study_id, deepcopy=False, states=states)
    assert two[1].get_n_trials(study._study_id, state) == len(listed)


def test_counting_a_study_that_does_not_exist_raises_key_error(
    two: tuple[RetryingStorage, ...],
) -> None:
    _study(two[0])
    with pytest.raises(KeyError):
        two[0].state_counts(10_000)


def test_a_study_created_again_under_a_reused_id_is_read_afresh(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=30)
    old = _study(storage)
    old.tell(_ask(old), 0.5)
    assert _states(old) == [TrialState.COMPLETE]  # cached
    optuna.delete_study(study_name=STUDY, storage=storage)
    new = _study(storage)
    assert _states(new) == []
