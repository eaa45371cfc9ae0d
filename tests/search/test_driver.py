"""The driver's handling of each way a run can end, with a stand-in job as real processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from search._optuna import quiet_experimental
from search.driver import Driver
from search.errors import StudyStopped
from search.events import parse_event
from search.storage.retrying import BACKOFF_MAX
from testkit import alive
from testkit.postgres import Server, throwaway_postgres
from tests.conftest import need
from tests.search.helpers import stub_driver


def _driver(tmp_path: Path, plan: str, trials: int = 2, **overrides) -> Driver:
    return stub_driver(tmp_path, plan, trials, **overrides)


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


@pytest.mark.parametrize("ending", ["exit4", "exit5", "exit7"])
def test_a_failed_run_is_recorded_and_the_study_goes_on(tmp_path, ending: str) -> None:
    driver = _driver(tmp_path, f"0={ending},*=done")
    driver.run()
    first, *rest = _trials(driver)
    assert first.state.name == "FAIL"
    assert first.user_attrs["exit_code"] == int(ending[len("exit") :])
    assert [t.state.name for t in rest] == ["COMPLETE", "COMPLETE"]


def test_a_run_out_of_memory_fails_with_its_reason_and_is_not_retried(tmp_path) -> None:
    driver = _driver(tmp_path, "0=exit5-memory,*=done")
    driver.run()
    first = _trials(driver)[0]
    assert first.state.name == "FAIL"
    assert first.user_attrs["fail_reason"] == "does not fit in memory"
    assert first.user_attrs["attempts"] == 1
    assert not any("failed_trial" in t.system_attrs for t in _trials(driver))


def test_runs_out_of_memory_do_not_count_as_failures_in_a_row(tmp_path) -> None:
    plan = "0=exit5-memory,1=exit5-memory,2=exit5-memory,*=done"
    driver = _driver(tmp_path, plan, trials=2, max_failures=2)
    driver.run()
    assert [t.state.name for t in _trials(driver)] == ["FAIL"] * 3 + ["COMPLETE"] * 2


def test_a_full_disk_stops_the_study_with_the_jobs_sentence(tmp_path) -> None:
    driver = _driver(tmp_path, "*=exit5-disk", trials=3)
    with pytest.raises(StudyStopped, match=r"ran out of disk space.*stub failure 5") as err:
        driver.run()
    assert err.value.code == 5
    assert len(_trials(driver)) == 1


def test_a_run_that_trained_every_epoch_is_complete_whatever_the_pruner_says(tmp_path) -> None:
    # The median pruner looks from epoch 2 on, once 2 trials finished: the poor trials'
    # epoch 2 is their last, so it must not be consulted there.
    driver = _driver(tmp_path, "0=done,1=done,*=low", trials=4)
    driver.run()
    for t in _trials(driver):
        assert t.state.name == "COMPLETE"
        assert t.value == pytest.approx(t.intermediate_values[2])


def test_pruned_trials_ran_fewer_epochs_than_the_budget(tmp_path) -> None:
    driver = _driver(tmp_path, "0=done,1=done,*=low", trials=4, job_env={"EPOCHS": "4"})
    driver.run()
    pruned = [t for t in _trials(driver) if t.state.name == "PRUNED"]
    assert len(pruned) == 2
    for t in pruned:
        assert t.user_attrs["epochs"] < 4
        assert sorted(t.intermediate_values) == list(range(1, t.user_attrs["epochs"] + 1))


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


def test_a_failed_gpu_fails_its_trial_naming_it_and_the_study_goes_on(tmp_path) -> None:
    driver = _driver(tmp_path, "0=exit6,*=done", trials=2, gpus=("1",))
    driver.run()
    first, *rest = _trials(driver)
    assert first.state.name == "FAIL" and first.user_attrs["exit_code"] == 6
    assert first.user_attrs["fail_reason"].startswith("GPU 1 failed (a CUDA error, exit 6)")
    assert [t.state.name for t in rest] == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize(("gpus", "per_gpu"), [(("0", "1"), 2), (("5",), 3)])
def test_k_trials_run_at_once_on_each_listed_gpu(tmp_path, gpus, per_gpu: int) -> None:
    slots = len(gpus) * per_gpu
    driver = _driver(tmp_path, f"*=gather{slots}", trials=slots, gpus=gpus, parallel=slots)
    driver.run()  # a gather run only finishes once all `slots` runs were up at once
    trials = _trials(driver)
    assert [t.state.name for t in trials] == ["COMPLETE"] * slots
    pins = [(tmp_path / "out" / "gather" / str(t.number)).read_text() for t in trials]
    assert sorted(pins) == sorted(list(gpus) * per_gpu)


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
    frozen = driver.study.ask()  # the queued baseline: pretend it was killed with its driver
    frozen.suggest_float("max_lr", 1e-3, 1e-1, log=True)
    driver.study.tell(frozen, state=optuna.trial.TrialState.FAIL)
    ckpt = tmp_path / "out" / "trials" / "0" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"state")
    driver.requeue(driver.study, driver.study.get_trials()[0])
    driver.run()
    retried = driver.study.get_trials()[1]
    assert retried.state.name == "COMPLETE"
    assert retried.params == {"max_lr": 0.01}  # the killed trial's
    assert (tmp_path / "out" / "trials" / "1" / "checkpoint.pt").read_bytes() == b"state"


@pytest.fixture
def postgres_server() -> Iterator[Server]:
    yield from throwaway_postgres(need)


def test_a_lost_database_stops_the_running_trials_and_the_study(tmp_path, postgres_server):
    driver = _driver(
        tmp_path,
        "*=silent",
        trials=1,
        storage=postgres_server.url(),
        storage_retry=2,
        heartbeat=1,
    )
    pid_file = tmp_path / "out" / "trials" / "0" / "pid"
    stopper = threading.Thread(target=lambda: _wait_for(pid_file) and postgres_server.stop())
    stopper.start()
    with pytest.raises(StudyStopped, match=f"127.0.0.1:{postgres_server.port}") as err:
        driver.run()
    stopper.join()
    assert err.value.code == 6
    assert "stayed unreachable for 2 s" in str(err.value)
    assert not alive(int(pid_file.read_text()))  # stopped (SIGTERM), to resume on a rerun


def _wait_for(path: Path) -> bool:
    for _ in range(600):
        if path.exists():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("back_for", "state"),
    [
        (3 + BACKOFF_MAX - 1, "RUNNING"),  # back for a grace period, not yet the longest wait
        (3 + BACKOFF_MAX + 1, "FAIL"),  # and past it: the heartbeat really stopped
    ],
)
def test_after_an_outage_heartbeats_are_judged_once_every_driver_could_beat_again(
    tmp_path, back_for: float, state: str
) -> None:
    driver = _driver(tmp_path, "*=done", trials=1, heartbeat=1)  # grace period: 3 s
    with quiet_experimental():
        trial = driver.study.ask()
    trial.set_user_attr("driver", "elsewhere:1:1")  # another machine's: only heartbeats tell
    driver.storage.record_heartbeat(trial._trial_id)
    time.sleep(4)  # seconds: the heartbeat is older than the grace period
    driver.storage.outage.reachable_since = time.monotonic() - back_for
    driver._reap()
    assert driver.study.get_trials()[0].state.name == state
