"""The driver's handling of each way a run can end, with a stand-in job as real processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest

from search.driver import Driver, Settings, StudyStopped
from search.events import parse_event
from search.launchers.local import LocalLauncher
from search.space import build_space

STUB = Path(__file__).with_name("stub_job.py")


def _driver(tmp_path: Path, plan: str, trials: int = 2, **overrides) -> Driver:
    settings = Settings(
        trials=trials,
        output=tmp_path / "out",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        study_name="t",
        space=build_space({"max_lr": {"low": 1e-3, "high": 1e-1, "log": True}}),
        launcher=LocalLauncher([sys.executable, str(STUB), plan]),
        data_dir=tmp_path / "data",
        seed=0,
        stop_grace=5,
        **overrides,
    )
    return Driver(settings)


def _trials(driver: Driver) -> list:
    return driver.study.get_trials()


def test_completed_runs_report_every_epoch(tmp_path) -> None:
    driver = _driver(tmp_path, "*=done")
    driver.run()
    for t in _trials(driver):
        assert t.state.name == "COMPLETE"
        assert t.intermediate_values == {1: pytest.approx(0.6), 2: pytest.approx(0.7)}
        assert t.value == pytest.approx(0.7)


def test_diverged_run_is_a_failed_result_not_retried(tmp_path) -> None:
    driver = _driver(tmp_path, "0=exit4,*=done")
    driver.run()
    first = _trials(driver)[0]
    assert first.state.name == "FAIL"
    assert first.user_attrs["exit_code"] == 4
    assert first.user_attrs["attempts"] == 1
    assert "exit 4" in first.user_attrs["stderr"]
    assert [t.state.name for t in _trials(driver)] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert not any("failed_trial" in t.system_attrs for t in _trials(driver))


def test_bad_configuration_stops_the_study(tmp_path) -> None:
    driver = _driver(tmp_path, "*=exit2", trials=5)
    with pytest.raises(StudyStopped, match="rejected its configuration") as err:
        driver.run()
    assert err.value.code == 2
    assert len(_trials(driver)) == 1


def test_preempted_run_is_relaunched_in_the_same_folder(tmp_path) -> None:
    driver = _driver(tmp_path, "0=preempt,*=done", trials=1)
    driver.run()
    (trial,) = _trials(driver)
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["attempts"] == 2
    assert sorted(trial.intermediate_values) == [1, 2]


def test_silent_run_is_stopped_after_the_trial_timeout(tmp_path) -> None:
    driver = _driver(tmp_path, "0=silent,*=done", trials=1, trial_timeout=3)
    driver.run()
    first, second = _trials(driver)
    assert first.state.name == "FAIL"
    assert "no event for 3 s" in first.user_attrs["fail_reason"]
    assert second.state.name == "COMPLETE"


def test_repeated_failures_stop_the_study(tmp_path) -> None:
    driver = _driver(tmp_path, "*=exit4", trials=2, max_failures=3)
    with pytest.raises(StudyStopped, match="3 trials failed in a row") as err:
        driver.run()
    assert err.value.code == 1


@pytest.mark.parametrize("gpus", [("3",), ("0", "1")])
def test_each_worker_is_pinned_to_one_gpu(tmp_path, gpus) -> None:
    driver = _driver(tmp_path, "*=done", trials=2, gpus=gpus, parallel=len(gpus))
    driver.run()
    for t in _trials(driver):
        env = json.loads((Path(t.user_attrs["output_dir"]) / "env.json").read_text())
        assert env["CUDA_VISIBLE_DEVICES"] == t.user_attrs["gpu"]
        assert t.user_attrs["gpu"] in gpus


def test_trial_environment_carries_params_and_fixed_settings(tmp_path) -> None:
    driver = _driver(tmp_path, "*=done", trials=1, job_env={"EPOCHS": "3"})
    driver.run()
    (t,) = _trials(driver)
    env = json.loads((Path(t.user_attrs["output_dir"]) / "env.json").read_text())
    assert float(env["MAX_LR"]) == t.params["max_lr"] == 0.01  # the enqueued baseline
    assert env["EPOCHS"] == "3"
    assert env["OUTPUT_DIR"] == str(tmp_path / "out" / "trials" / "0")
    assert env["DATA_DIR"] == str(tmp_path / "data")


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ('{"v":1,"event":"epoch","epoch":1}\n', {"v": 1, "event": "epoch", "epoch": 1}),
        (b'{"v":1,"event":"done","val_acc":0.9}', {"v": 1, "event": "done", "val_acc": 0.9}),
        ("epoch 1/8 train_loss 1.2\n", None),
        ('{"v":1,"event":', None),
        ('{"no_event": 1}', None),
        ("[1, 2]", None),
        ('{"v":2,"event":"epoch","epoch":1}', None),  # another contract version
    ],
)
def test_parse_event(line, event) -> None:
    assert parse_event(line) == event


def test_stopping_the_driver_fails_running_trials_and_queues_them_again(tmp_path) -> None:
    import threading

    driver = _driver(tmp_path, "*=silent", trials=1)
    started = threading.Event()
    original = driver.settings.launcher.start

    def start(spec):
        run = original(spec)
        started.set()
        return run

    driver.settings.launcher.start = start
    threading.Thread(target=lambda: started.wait(60) and driver.stop(), daemon=True).start()
    driver.run()
    first, queued = driver.study.get_trials()
    assert first.state.name == "FAIL"
    assert first.user_attrs["fail_reason"] == "the driver was stopped"
    assert queued.state.name == "WAITING"
    assert queued.params == first.params
    assert queued.system_attrs["failed_trial"] == first.number


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_retried_trial_resumes_from_the_failed_trials_checkpoint(tmp_path) -> None:
    driver = _driver(tmp_path, "*=done", trials=1)
    driver.study.enqueue_trial({"max_lr": 0.05})  # pretend trial 0 was killed with its driver
    frozen = driver.study.ask()
    driver.study.tell(frozen, state=optuna.trial.TrialState.FAIL)
    ckpt = tmp_path / "out" / "trials" / "0" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"state")
    driver.requeue(driver.study, driver.study.get_trials()[0])
    driver.run()
    retried = driver.study.get_trials()[1]
    assert retried.state.name == "COMPLETE"
    assert retried.params == {"max_lr": 0.05}
    assert (tmp_path / "out" / "trials" / "1" / "checkpoint.pt").read_bytes() == b"state"
