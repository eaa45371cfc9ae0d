"""Exactly-once writes: every write the driver makes, with the reply to its commit lost
after the database committed it (a real fault injector on real SQLite and PostgreSQL), is
applied once and leaves nothing orphaned."""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from search._optuna import quiet_experimental, trial_id
from search.storage import RetryingStorage
from tests.search.storage.conftest import Faulty

MAX = [StudyDirection.MAXIMIZE]


def _study(storage: RetryingStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="s", direction="maximize")


def _ask(study: optuna.Study) -> optuna.Trial:
    with quiet_experimental(), pytest.warns(UserWarning, match="Heartbeat"):
        return study.ask()


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def create_named_study(f: Faulty) -> None:
    f.dropper.arm()
    study_id = f.storage.create_new_study(MAX, "named")
    assert [(s._study_id, s.study_name) for s in f.storage.get_all_studies()] == [
        (study_id, "named")
    ]


def create_unnamed_study(f: Faulty) -> None:
    f.dropper.arm()
    study_id = f.storage.create_new_study(MAX)
    assert [s._study_id for s in f.storage.get_all_studies()] == [study_id]


def delete_study(f: Faulty) -> None:
    study_id = f.storage.create_new_study(MAX, "doomed")
    f.dropper.arm()
    f.storage.delete_study(study_id)
    assert f.storage.get_all_studies() == []


def ask_new_trial(f: Faulty) -> None:
    study = _study(f.storage)
    f.dropper.arm()
    trial = _ask(study)
    assert [(t._trial_id, t.state) for t in study.get_trials()] == [
        (trial_id(trial), TrialState.RUNNING)
    ]


def enqueue_trial(f: Faulty) -> None:
    study = _study(f.storage)
    f.dropper.arm()
    study.enqueue_trial({"x": 0.25})
    assert _states(study) == [TrialState.WAITING]


def take_queued_trial(f: Faulty) -> None:
    study = _study(f.storage)
    study.enqueue_trial({"x": 0.25})
    f.dropper.arm()
    trial = _ask(study)
    assert trial.suggest_float("x", 0, 1) == 0.25  # the queued trial, not a new one
    assert _states(study) == [TrialState.RUNNING]


def requeue_failed_trial(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    study.tell(trial, state=TrialState.FAIL)
    f.dropper.arm()
    f.storage.create_new_trial(study._study_id, study.trials[0])
    assert _states(study) == [TrialState.FAIL, TrialState.FAIL]


def tell_complete(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    study.tell(trial, 0.75)
    assert [(t.state, t.value) for t in study.get_trials()] == [(TrialState.COMPLETE, 0.75)]


def fail_running_trial(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    assert f.storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
    assert _states(study) == [TrialState.FAIL]


def suggest_param(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    f.storage.set_trial_param(trial_id(trial), "x", 0.5, FloatDistribution(0, 1))
    assert study.trials[0].params == {"x": 0.5}


def set_user_attr(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    trial.set_user_attr("driver", "here")
    assert study.trials[0].user_attrs == {"driver": "here"}


def set_system_attr(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    f.storage.set_trial_system_attr(trial_id(trial), "k", [1, 2])
    assert study.trials[0].system_attrs == {"k": [1, 2]}


def report_epoch(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    trial.report(0.5, step=1)
    assert study.trials[0].intermediate_values == {1: 0.5}


def record_heartbeat(f: Faulty) -> None:
    study = _study(f.storage)
    trial = _ask(study)
    f.dropper.arm()
    f.storage.record_heartbeat(trial_id(trial))
    assert f.storage._get_stale_trial_ids(study._study_id) == []


def set_study_attr(f: Faulty) -> None:
    study = _study(f.storage)
    f.dropper.arm()
    study.set_user_attr("space", {"x": 1})
    assert study.user_attrs == {"space": {"x": 1}}


WRITES: list[Callable[[Faulty], None]] = [
    create_named_study,
    create_unnamed_study,
    delete_study,
    ask_new_trial,
    enqueue_trial,
    take_queued_trial,
    requeue_failed_trial,
    tell_complete,
    fail_running_trial,
    suggest_param,
    set_user_attr,
    set_system_attr,
    report_epoch,
    record_heartbeat,
    set_study_attr,
]


@pytest.mark.parametrize("write", WRITES, ids=[w.__name__ for w in WRITES])
def test_a_write_whose_commit_reply_is_lost_is_applied_once(
    faulty: Faulty, write: Callable[[Faulty], None]
) -> None:
    write(faulty)
    assert faulty.dropper.fired.is_set()  # the fault did hit the write's commit
