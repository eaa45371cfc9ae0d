"""search.trial: one trial's runs, events and result, against a real Optuna study on SQLite
and the stand-in job (testkit/job.py) run as a local process."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from job.contract import EXIT_MEANINGS, ExitCode
from search._optuna import quiet_experimental, storage_of
from search.errors import StudyStopped
from search.exits import MISPLACED, DriverExit
from search.launchers.base import LOST
from search.launchers.local import LocalLauncher
from search.settings import Settings
from search.space import build_space
from search.storage import Requeue, make_storage
from search.study.create import create, make_pruner, make_sampler
from search.trial import DOES_NOT_FIT, TrialRunner, _Outcome, _why
from testkit import job as standin

SPACE = {"max_lr": {"low": 1e-3, "high": 1e-1, "log": True}}


@pytest.fixture
def study(tmp_path: Path) -> Iterator[optuna.Study]:
    """A study on SQLite in ``tmp_path`` whose pruner prunes any epoch below 0.9."""
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", retry_seconds=60, heartbeat=10)
    study = create(storage, "t", make_sampler("tpe", None), make_pruner("none"))
    study.pruner = optuna.pruners.ThresholdPruner(lower=0.9)
    yield study


def _ask(study: optuna.Study) -> optuna.Trial:
    with quiet_experimental():  # heartbeats come from the driver's thread, as in the driver
        return study.ask()


def _runner(tmp_path: Path, study: optuna.Study, command: list[str], **settings: Any):
    values: dict[str, Any] = {
        "trials": 1,
        "output": tmp_path / "out",
        "storage": f"sqlite:///{tmp_path / 'study.db'}",
        "study_name": "t",
        "space": build_space(SPACE),
        "launcher": LocalLauncher(command),
        "data_dir": tmp_path / "data",
        "stop_grace": 5,
        **settings,
    }
    options = Settings(**values)
    study.pruner = optuna.pruners.NopPruner()  # one epoch then an exit: nothing to prune
    requeue = Requeue(options.retries)
    return TrialRunner(options, study, storage_of(study), threading.Event(), requeue)


def _run(tmp_path: Path, study: optuna.Study, plan: str, **settings: Any):
    runner = _runner(tmp_path, study, [sys.executable, str(standin.PATH), plan], **settings)
    return runner.run(_ask(study), None)


# -- a run's exit code in words ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (ExitCode.DONE, "the job ended without a done event"),
        (LOST, "the run disappeared"),
        (137, "killed (exit 137)"),
        (ExitCode.DIVERGED, f"{EXIT_MEANINGS[ExitCode.DIVERGED]} (exit 4)"),
        (ExitCode.STOPPED, f"{EXIT_MEANINGS[ExitCode.STOPPED]} (exit 143)"),
        (42, "exit 42"),
    ],
)
def test_an_exit_code_is_said_in_words(code: int, words: str) -> None:
    assert _why(code) == words


def test_a_failed_gpu_is_named() -> None:
    assert _why(ExitCode.DEVICE_FAILED, "3").startswith("GPU 3 failed (a CUDA error, exit 6)")
    assert _why(ExitCode.DEVICE_FAILED) == f"{EXIT_MEANINGS[ExitCode.DEVICE_FAILED]} (exit 6)"


# -- the events of a run -----------------------------------------------------------------------


def _epoch(epoch: int, val_acc: float, epochs: int = 3) -> dict[str, Any]:
    return {"event": "epoch", "epoch": epoch, "epochs": epochs, "val_acc": val_acc}


def test_each_epoch_is_reported_once(study: optuna.Study) -> None:
    trial = _ask(study)
    outcome = _Outcome(trial)
    for event in (_epoch(1, 0.95), _epoch(2, 0.96), _epoch(2, 0.1)):  # a resumed run repeats
        outcome.on_event(event)
    assert study.trials[0].intermediate_values == {1: 0.95, 2: 0.96}
    assert outcome.epochs == 2


@pytest.mark.parametrize(
    ("event", "latest", "pruned"),
    [
        (_epoch(1, 0.5), True, True),
        (_epoch(1, 0.5), False, False),  # more is waiting to be read: not the run's latest
        (_epoch(3, 0.5), True, False),  # the final epoch: the run is complete
        (_epoch(1, 0.95), True, False),
    ],
)
def test_the_pruner_decides_on_the_latest_epoch_before_the_last(
    study: optuna.Study, event: dict[str, Any], latest: bool, pruned: bool
) -> None:
    outcome = _Outcome(_ask(study))
    assert outcome.on_event(event, latest=latest) is pruned
    assert (outcome.state == TrialState.PRUNED) is pruned


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [
        ({"event": "done", "val_acc": 0.91}, "val_acc", 0.91),
        ({"event": "error", "message": "disk full", "reason": "disk"}, "error", "disk full"),
        ({"event": "error", "message": "oom", "reason": "memory"}, "resource", "memory"),
        ({"event": "start", "pid": 7}, "val_acc", None),
    ],
)
def test_done_and_error_events_are_kept(
    study: optuna.Study, event: dict[str, Any], field: str, value: object
) -> None:
    outcome = _Outcome(_ask(study))
    assert outcome.on_event(event) is False
    assert getattr(outcome, field) == value


# -- runs through the local launcher -----------------------------------------------------------


def test_a_complete_run_records_its_result(tmp_path: Path, study: optuna.Study) -> None:
    frozen = _run(tmp_path, study, "*=done", job_env={"EPOCHS": "3"})
    assert frozen.state == TrialState.COMPLETE
    assert frozen.value == pytest.approx(0.8)
    attrs = frozen.user_attrs
    assert (attrs["exit_code"], attrs["epochs"], attrs["attempts"]) == (0, 3, 1)
    assert attrs["output_dir"] == str(tmp_path / "out" / "trials" / "0")
    assert attrs["launcher"] == "local"
    assert Path(attrs["log"]).is_file()


def test_a_launcher_that_cannot_start_fails_the_trial(tmp_path: Path, study: optuna.Study) -> None:
    runner = _runner(tmp_path, study, [str(tmp_path / "no-such-program")])
    frozen = runner.run(_ask(study), None)
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["fail_reason"].startswith("the launcher could not start the run:")
    assert frozen.user_attrs["exit_code"] == LOST


@pytest.mark.parametrize("retries", [0, 2])
def test_a_run_preempted_every_time_fails_once_its_retries_are_used(
    tmp_path: Path, study: optuna.Study, retries: int
) -> None:
    frozen = _run(tmp_path, study, "*=exit143", retries=retries)
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["attempts"] == retries + 1
    assert frozen.user_attrs["fail_reason"] == _why(ExitCode.STOPPED)


@pytest.mark.parametrize(
    ("plan", "code", "what"),
    [
        ("*=exit2", DriverExit.BAD_INPUT, "rejected its configuration"),
        ("*=exit3", DriverExit.NO_DATA, "found no data"),
        ("*=exit5-disk", DriverExit.RESOURCES, "ran out of disk space"),
    ],
)
def test_a_failure_every_trial_would_repeat_stops_the_study(
    tmp_path: Path, study: optuna.Study, plan: str, code: DriverExit, what: str
) -> None:
    with pytest.raises(StudyStopped, match=what) as stopped:
        _run(tmp_path, study, plan)
    assert stopped.value.code == code
    assert "stub failure" in str(stopped.value)  # the job's own sentence
    assert study.trials[0].state == TrialState.FAIL


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ("*=exit5-memory", DOES_NOT_FIT),
        ("*=exit4", _why(ExitCode.DIVERGED)),
        ("*=exit6", _why(ExitCode.DEVICE_FAILED)),  # the GPU failed: other GPUs may be fine
    ],
)
def test_a_failure_of_this_trial_alone_is_recorded_and_the_study_goes_on(
    tmp_path: Path, study: optuna.Study, plan: str, reason: str
) -> None:
    frozen = _run(tmp_path, study, plan)
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["fail_reason"] == reason
    assert "stub failure" in frozen.user_attrs["stderr"]


# -- signs of life: --trial-timeout --------------------------------------------------------------


def test_a_trial_whose_epoch_outlasts_the_timeout_but_reports_progress_completes(
    tmp_path: Path, study: optuna.Study
) -> None:
    timeout = 1.0
    # The epoch alone would be stale:
    assert standin.PROGRESS_EVERY < timeout < standin.SLOW_EPOCH_SECONDS
    frozen = _run(tmp_path, study, "*=slow", trial_timeout=timeout)
    assert frozen.state == TrialState.COMPLETE
    assert frozen.value == pytest.approx(0.6)


def test_a_trial_that_sends_nothing_for_the_timeout_is_still_failed(
    tmp_path: Path, study: optuna.Study
) -> None:
    frozen = _run(tmp_path, study, "*=silent", trial_timeout=1.0)
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["fail_reason"] == "no event for 1 s; stopped"


# -- a run must train where it was placed --------------------------------------------------------

ON_DEVICE = """
import json, sys, time
print(json.dumps({"v": 1, "event": "start", "device": sys.argv[1]}), flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize(
    ("gpu", "device", "words"),
    [(None, "cuda:0", "trained on cuda:0 but was placed on no GPU"), ("2", "cpu", "on GPU 2")],
)
def test_a_run_on_another_device_is_stopped_at_once_and_fails(
    tmp_path: Path, study: optuna.Study, gpu: str | None, device: str, words: str
) -> None:
    runner = _runner(tmp_path, study, [sys.executable, "-c", ON_DEVICE, device], stop_grace=60)
    started = time.monotonic()
    frozen = runner.run(_ask(study), gpu)
    assert time.monotonic() - started < 30  # not the 60 s grace, nor the run's hour
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["exit_code"] == MISPLACED
    assert frozen.user_attrs["attempts"] == 1  # not retried as a preempted run would be
    assert words in frozen.user_attrs["fail_reason"]
    assert "check DEVICE" in frozen.user_attrs["fail_reason"]


@pytest.mark.parametrize(
    ("gpu", "device", "stopped"),
    [(None, "cpu", False), ("0", "cuda", False), ("0", "cuda:0", False), ("0", "cpu", True),
     (None, "cuda", True), ("1", "cuda:1", True)],
)  # fmt: skip
def test_the_start_event_is_checked_against_the_placement(
    study: optuna.Study, gpu: str | None, device: str, stopped: bool
) -> None:
    outcome = _Outcome(_ask(study), gpu)
    assert outcome.on_event({"event": "start", "device": device}) is stopped
    assert outcome.misplaced is stopped


# -- a run that ended while its pruning was being decided -----------------------------------------

FINISHES = """
import json, time
def emit(**event): print(json.dumps({"v": 1, **event}), flush=True)
emit(event="epoch", epoch=1, epochs=2, val_acc=0.1)
time.sleep(0.3)  # the driver is deciding on epoch 1 by now
emit(event="epoch", epoch=2, epochs=2, val_acc=0.2)
emit(event="done", val_acc=0.2)
"""


class _SlowPruner(optuna.pruners.BasePruner):
    """Prunes every trial, after the wait of a storage call while the database is down."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        time.sleep(2.0)
        return True


def test_a_run_that_finished_while_its_pruning_was_decided_is_complete(
    tmp_path: Path, study: optuna.Study
) -> None:
    runner = _runner(tmp_path, study, [sys.executable, "-c", FINISHES])
    study.pruner = _SlowPruner()
    frozen = runner.run(_ask(study), None)
    assert frozen.state == TrialState.COMPLETE
    assert frozen.value == pytest.approx(0.2)
    assert frozen.intermediate_values == {1: pytest.approx(0.1), 2: pytest.approx(0.2)}
