"""End to end: ``python -m search run`` drives the real job as local processes.

Small trials (MODEL_WIDTH 0.125, 200 training images, 2-4 epochs on the CPU) keep the whole
file to a few minutes; everything else is real: subprocesses, signals, SQLite, PostgreSQL,
the dashboard's HTTP server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from search.space import TUTORIAL_DEFAULTS
from search.storage import make_storage
from testkit import alive
from testkit.postgres import PASSWORD, Server, free_port, throwaway_postgres
from tests.conftest import REPO, need
from tests.search.helpers import (
    clean_env,
    empty_database,
    load,
    run_search,
    search_args,
    spawn,
    states,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_run(archives, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One finished 4-trial study, 2 trials at a time, on SQLite."""
    output = tmp_path_factory.mktemp("e2e") / "search"
    proc = run_search(search_args(output, archives["fastai"], trials=4, parallel=2))
    assert proc.returncode == 0, proc.stderr
    return output, proc


def test_study_holds_the_budget_of_finished_trials(study_run) -> None:
    study = load(study_run[0])
    assert sum(s in ("COMPLETE", "PRUNED") for s in states(study)) == 4
    assert "RUNNING" not in states(study)


def test_first_trial_is_the_tutorial_recipe(study_run) -> None:
    first = load(study_run[0]).trials[0]
    assert first.params == TUTORIAL_DEFAULTS
    assert first.state.name == "COMPLETE"


def test_each_epoch_is_reported_as_an_intermediate_value(study_run) -> None:
    for trial in load(study_run[0]).trials:
        epochs = trial.user_attrs["epochs"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        if trial.state.name == "COMPLETE":
            history = json.loads(
                (Path(trial.user_attrs["output_dir"]) / "history.json").read_text()
            )
            assert trial.intermediate_values[epochs] == pytest.approx(history[epochs]["val_acc"])


def test_complete_trials_record_val_acc_exit_code_and_timing(study_run) -> None:
    for trial in load(study_run[0]).trials:
        if trial.state.name == "COMPLETE":
            metrics = json.loads(
                (Path(trial.user_attrs["output_dir"]) / "metrics.json").read_text()
            )
            assert trial.value == pytest.approx(metrics["val_acc"])
            assert trial.user_attrs["exit_code"] == 0
            assert trial.user_attrs["launch_seconds"] > 0


@pytest.mark.parametrize(
    "name",
    [
        "best_params.json",
        "best.env",
        "trials.csv",
        "plots/optimization_history.png",
        "plots/intermediate_values.png",
        "trials/0/history.json",
        "trials/0/accuracy.png",
        "trials/0/job.log",
    ],
)
def test_result_file_is_written(study_run, name: str) -> None:
    assert (study_run[0] / name).stat().st_size > 0


def test_trials_csv_has_one_row_per_trial(study_run) -> None:
    frame = pd.read_csv(study_run[0] / "trials.csv")
    assert list(frame["number"]) == [0, 1, 2, 3]
    for column in ("state", "param_max_lr", "val_acc", "epochs", "seconds", "exit_code"):
        assert column in frame.columns


def test_best_env_matches_best_params(study_run) -> None:
    best = json.loads((study_run[0] / "best_params.json").read_text())
    lines = (study_run[0] / "best.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert env == best["env"]
    assert float(env["MAX_LR"]) == pytest.approx(best["params"]["max_lr"])
    assert best["val_acc"] == max(t.value for t in load(study_run[0]).trials if t.value is not None)


def test_best_command_writes_a_valid_configmap(study_run) -> None:
    import kubernetes_validate

    output = study_run[0]
    proc = run_search(
        [*_cli("best"), "--output", str(output), "--configmap", "resnet-job-best"],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(proc.stdout)["trial"]
        == json.loads((output / "best_params.json").read_text())["trial"]
    )
    doc = yaml.safe_load((output / "configmap.yaml").read_text())
    kubernetes_validate.validate(doc, "1.31", strict=True)
    assert set(doc["data"]) == {"MAX_LR", "WEIGHT_DECAY", "GRAD_CLIP", "BATCH_SIZE"}


def test_report_command_rewrites_trials_csv(study_run) -> None:
    output = study_run[0]
    (output / "trials.csv").unlink()
    proc = run_search(
        [*_cli("report"), "--output", str(output)],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(output / "trials.csv")) == 4


def test_rerun_with_the_budget_met_runs_nothing(study_run) -> None:
    output = study_run[0]
    args = search_args(output, Path("/nonexistent.tgz"), trials=4)  # would fail if it ran
    proc = run_search(args)
    assert proc.returncode == 0, proc.stderr
    assert len(load(output).trials) == 4


def test_dashboard_serves_the_study_and_a_trial_artifact(study_run) -> None:
    output = study_run[0]
    port = free_port()
    proc = subprocess.Popen(
        [*_cli("dashboard"), "--output", str(output), "--port", str(port)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        studies = _get_json(f"{base}/api/studies", proc)["study_summaries"]
        study = next(s for s in studies if s["study_name"] == "resnet-job")
        detail = _get_json(f"{base}/api/studies/{study['study_id']}", proc)
        trial = detail["trials"][0]
        art = next(a for a in trial["artifacts"] if a["filename"] == "history.json")
        url = f"{base}/artifacts/{study['study_id']}/{trial['trial_id']}/{art['artifact_id']}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
        assert body == (output / "trials" / str(trial["number"]) / "history.json").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_pruned_trials_ran_fewer_epochs(archives, tmp_path) -> None:
    space = tmp_path / "space.yaml"
    # The whole space (BATCH_SIZE stays a fixed --job-env): many hopeless trials.
    space.write_text("replace: true\nmax_lr: {low: 1.0e-6, high: 0.5, log: true}\n")
    output = tmp_path / "search"
    args = search_args(
        output,
        archives["fastai"],
        trials=6,
        epochs=3,
        job={"BATCH_SIZE": "50"},
        extra=["--space", str(space), "--pruner", "median", "--sampler", "random"],
    )
    proc = run_search(args)
    assert proc.returncode == 0, proc.stderr
    trials = load(output).trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert pruned, states(load(output))
    for t in pruned:
        assert t.user_attrs["epochs"] < 3
        assert len(t.intermediate_values) == t.user_attrs["epochs"]
        assert t.user_attrs["exit_code"] != 0  # stopped mid-run, not finished
    for t in complete:
        history = json.loads((output / "trials" / str(t.number) / "history.json").read_text())
        assert t.user_attrs["epochs"] == len(history) - 1 == 3  # entry 0: before training


def test_a_space_file_tunes_label_smoothing_into_each_trials_job(archives, tmp_path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("label_smoothing: {low: 0.05, high: 0.3}\n")
    output = tmp_path / "search"
    args = search_args(
        output, archives["fastai"], trials=2, epochs=1, extra=["--space", str(space)]
    )
    proc = run_search(args)
    assert proc.returncode == 0, proc.stderr
    trials = load(output).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        config = json.loads((output / "trials" / str(t.number) / "config.json").read_text())
        assert 0.05 <= t.params["label_smoothing"] <= 0.3
        assert config["label_smoothing"] == pytest.approx(t.params["label_smoothing"])


def test_killed_driver_takes_its_trials_along_and_a_rerun_finishes_the_budget(
    archives, tmp_path
) -> None:
    output = tmp_path / "search"
    args = search_args(output, archives["fastai"], trials=4, parallel=2, epochs=3)
    driver = subprocess.Popen(
        args, cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    jobs = _wait_for_jobs(output, driver, count=2)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    survivors = _wait_gone(jobs)
    assert not survivors, f"job processes outlived the killed driver: {survivors}"
    assert "RUNNING" in states(load(output))

    proc = run_search(args)
    assert proc.returncode == 0, proc.stderr
    study = load(output)
    finished = [s for s in states(study) if s in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4
    assert "RUNNING" not in states(study)
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert retried, "the killed trials' parameters were not queued again"


def test_sigterm_stops_the_driver_gracefully_and_a_rerun_resumes(archives, tmp_path) -> None:
    output = tmp_path / "search"
    args = search_args(output, archives["fastai"], trials=1, epochs=8)
    driver = subprocess.Popen(
        args,
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = output / "trials" / "0" / "checkpoint.pt"
    for _ in range(1500):  # until epoch 1 is checkpointed
        if driver.poll() is not None or (checkpoint.exists() and _epoch_done(output)):
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 143, err
    assert "rerun the same command" in err
    study = load(output)
    assert states(study) == ["FAIL", "WAITING"]
    assert not _job_pids(output)

    proc = run_search(args)
    assert proc.returncode == 0, proc.stderr
    study = load(output)
    assert states(study) == ["FAIL", "COMPLETE"]
    resumed = study.trials[1]
    assert sorted(resumed.intermediate_values)[-1] == 8
    assert "resumed after epoch" in (output / "trials" / "1" / "job.log").read_text()


def _epoch_done(output: Path) -> bool:
    log = output / "trials" / "0" / "job.log"
    return log.exists() and "epoch 1/8" in log.read_text()


@pytest.mark.postgres
def test_two_drivers_share_one_postgresql_study(archives, tmp_path) -> None:
    url = os.environ.get("RESNET_JOB_POSTGRES_URL")
    need(bool(url), "RESNET_JOB_POSTGRES_URL is not set (start one with .ci/postgres.sh)")
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    procs = [
        subprocess.Popen(
            search_args(
                tmp_path / f"driver{i}",
                archives["fastai"],
                trials=4,
                extra=["--storage", url, "--study-name", name],
            ),
            cwd=REPO,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = load(tmp_path, study=name, storage=url)
    finished = sum(s in ("COMPLETE", "PRUNED") for s in states(study))
    assert 4 <= finished <= 4 + (2 - 1)
    assert "RUNNING" not in states(study)
    drivers = {t.user_attrs["driver"] for t in study.trials}
    assert len(drivers) == 2, "both drivers should have run trials"


@pytest.fixture
def postgres_server() -> Iterator[Server]:
    yield from throwaway_postgres(need)


def _finished(study) -> int:
    return sum(s in ("COMPLETE", "PRUNED") for s in states(study))


def _drivers(args_of, count: int) -> list[subprocess.Popen[str]]:
    """Start ``count`` drivers at once; ``args_of(i)`` gives driver i's command line."""
    return [spawn(args_of(i)) for i in range(count)]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from empty_database(request.param, tmp_path)


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_drivers_started_at_once_on_an_empty_database_share_one_study(
    archives, tmp_path, database_url: str
) -> None:
    url = database_url
    trials, workers = 3, 3
    procs = _drivers(
        lambda i: search_args(
            tmp_path / f"driver{i}",
            archives["fastai"],
            trials=trials,
            epochs=1,
            extra=["--storage", url, "--study-name", "fresh"],
        ),
        workers,
    )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = load(tmp_path, study="fresh", storage=url)
    assert trials <= _finished(study) <= trials + workers - 1
    assert "RUNNING" not in states(study)


def test_a_database_outage_mid_study_loses_no_trial(archives, tmp_path, postgres_server) -> None:
    url = postgres_server.url()
    trials, workers = 6, 2
    procs = _drivers(
        lambda i: search_args(
            tmp_path / f"driver{i}",
            archives["fastai"],
            trials=trials,
            epochs=3,
            extra=["--storage", url, "--study-name", "outage", "--storage-retry", "120"],
        ),
        workers,
    )
    for _ in range(3000):  # until a trial finished and both drivers run one
        ended = [p.communicate()[1] for p in procs if p.poll() is not None]
        assert not ended, f"a driver ended before the outage: {ended}"
        try:
            study = load(tmp_path, study="outage", storage=url)
        except KeyError:  # not created yet
            time.sleep(0.2)
            continue
        running = [t for t in study.trials if t.state.name == "RUNNING"]
        if _finished(study) >= 1 and len({t.user_attrs.get("driver") for t in running}) == 2:
            break
        time.sleep(0.2)
    postgres_server.stop()
    time.sleep(20)  # the outage: running trials finish meanwhile and wait to be recorded
    postgres_server.start()
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        errors.append(err)
    assert all("reachable again" in err for err in errors), errors
    study = load(tmp_path, study="outage", storage=url)
    assert trials <= _finished(study) <= trials + workers - 1
    assert "RUNNING" not in states(study)
    for metrics in tmp_path.glob("driver*/trials/*/metrics.json"):  # every run that ended
        trial = study.trials[int(metrics.parent.name)]
        assert trial.state.name == "COMPLETE", (trial.number, trial.state, trial.user_attrs)


def test_the_storage_password_appears_nowhere(archives, tmp_path, postgres_server) -> None:
    output = tmp_path / "search"
    args = search_args(
        output,
        archives["fastai"],
        trials=2,
        extra=["--storage", postgres_server.url(), "--study-name", "secret"],
    )
    proc = run_search(args)
    assert proc.returncode == 0, proc.stderr
    study = load(output, study="secret", storage=postgres_server.url())
    storage = make_storage(postgres_server.url(), retry_seconds=60)
    study_id = storage.get_study_id_from_name("secret")
    attrs = json.dumps(
        [[t.user_attrs, t.system_attrs] for t in study.trials]
        + [study.user_attrs, storage.get_study_system_attrs(study_id)],
        default=str,
    )
    written = [path.read_bytes() for path in output.rglob("*") if path.is_file()]
    assert len(written) > 10  # trials.csv, best_params.json, each trial's files and log, ...
    for text in (proc.stdout.encode(), proc.stderr.encode(), attrs.encode(), *written):
        assert PASSWORD.encode() not in text


# -- helpers ------------------------------------------------------------------------------


def _cli(command: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "search", command]


def _get_json(url: str, server: subprocess.Popen, tries: int = 120) -> dict:
    for _ in range(tries):
        if server.poll() is not None:
            pytest.fail(f"dashboard exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"dashboard never answered {url}")


def _job_pids(output: Path) -> dict[int, str]:
    """Processes whose stderr is a trial's job.log in ``output`` → that trial's folder (a warm
    trial's /proc/PID/environ shows its warm process's environment, not its own)."""
    trials = f"{output}/trials/"
    pids = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stderr = os.readlink(entry / "fd" / "2")
            except OSError:
                continue
            if stderr.startswith(trials) and stderr.endswith("/job.log"):
                pids[int(entry.name)] = stderr.rsplit("/", 1)[0]
    return pids


def _wait_for_jobs(output: Path, driver: subprocess.Popen, count: int) -> list[int]:
    """Wait until ``count`` trials' job processes run at once; return all their pids."""
    for _ in range(1500):
        assert driver.poll() is None, "the driver ended before its trials were seen"
        pids = _job_pids(output)
        if len(set(pids.values())) >= count:
            return list(pids)
        time.sleep(0.2)
    pytest.fail("the driver never ran two job processes at once")


def _wait_gone(pids: list[int]) -> list[int]:
    """The pids still alive after a bounded wait (the kernel delivers PDEATHSIG at once)."""
    for _ in range(150):
        running = [p for p in pids if alive(p)]
        if not running:
            return []
        time.sleep(0.2)
    return running
