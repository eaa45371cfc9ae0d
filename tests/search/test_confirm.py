"""The confirmation phase: re-runs of the top configurations and the baseline on the same
seeds, ranked by their mean; with the stand-in job whose scores depend on the seed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search import confirm
from search.driver import Driver
from search.report import BEST_ENV, BEST_PARAMS, configmap, write_best
from search.study import confirmation
from testkit import alive
from tests.conftest import REPO
from tests.search.helpers import clean_env, empty_database, load, stub_driver

LUCKY = {
    # max_lr: val_acc on seeds 0, 1, 2. 0.01 is the baseline (the tutorial's max_lr); 0.02
    # is lucky on the study's seed 0 (the single-seed best), 0.03 has the best mean.
    0.01: (0.40, 0.42, 0.41),
    0.02: (0.60, 0.45, 0.44),
    0.03: (0.55, 0.54, 0.56),
    0.04: (0.50, 0.30, 0.30),
}
NOTHING_BEATS_THE_BASELINE = {
    0.01: (0.50, 0.52, 0.51),
    0.02: (0.60, 0.45, 0.44),
    0.03: (0.55, 0.46, 0.45),
    0.04: (0.30, 0.30, 0.30),
}


def _scores(table: dict[float, tuple[float, ...]]) -> str:
    return " ".join(
        f"{lr:g}@{seed}:{value}" for lr, row in table.items() for seed, value in enumerate(row)
    )


def _env(table: dict[float, tuple[float, ...]], confirm_seconds: float = 0) -> dict[str, str]:
    return {
        "STANDIN_SCORES": _scores(table),
        "STANDIN_CONFIRM_SECONDS": str(confirm_seconds),
    }


def _driver(tmp_path: Path, table: dict[float, tuple[float, ...]], **overrides) -> Driver:
    """A 4-trial study of the baseline then max_lr 0.02, 0.03, 0.04; top 2 confirmed on 3
    seeds."""
    settings = {"confirm": 2, "confirm_seeds": 3, "job_env": _env(table), **overrides}
    driver = stub_driver(tmp_path, "*=scored", trials=4, **settings)
    _queue(driver.study)
    return driver


def _queue(study: optuna.Study) -> None:
    if len(study.get_trials(deepcopy=False)) == 1:  # the baseline alone: queue the others
        for lr in (0.02, 0.03, 0.04):
            study.enqueue_trial({"max_lr": lr})


def _runs(sibling: optuna.Study) -> Counter:
    """How many COMPLETE runs each (confirmed trial, seed) has."""
    return Counter(
        (t.params[confirmation.CONFIRMS], t.params[confirmation.SEED])
        for t in sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )


PLANNED = Counter({(n, s): 1 for n in (0, 1, 2) for s in (1, 2)})
"""The lucky study's plan: trials 1 and 2 (the top 2) and 0 (the baseline), seeds 1 and 2."""


def test_the_confirmed_winner_is_the_best_mean_not_the_single_seed_best(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    best = write_best(driver.study, tmp_path / "res")
    assert driver.study.best_trial.number == 1  # max_lr 0.02, lucky on seed 0
    assert best is not None and best.number == 2
    assert best.params == {"max_lr": 0.03}


def test_each_planned_run_completes_once(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    assert driver.sibling is not None
    assert _runs(driver.sibling) == PLANNED


def test_confirmation_runs_set_their_seed_and_say_what_they_confirm(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    assert driver.sibling is not None
    for t in driver.sibling.get_trials(deepcopy=False):
        env = json.loads((Path(t.user_attrs["output_dir"]) / "env.json").read_text())
        assert env["SEED"] == str(t.user_attrs["seed"]) == str(t.params["seed"])
        assert t.user_attrs["confirms"] == t.params["confirms"]


def test_the_study_trials_stay_single_seed_runs(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    assert len(driver.study.get_trials(deepcopy=False)) == 4
    assert {t.user_attrs["seed"] for t in driver.study.get_trials(deepcopy=False)} == {"0"}


def test_best_params_json_holds_the_confirmation(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    write_best(driver.study, tmp_path / "res")
    summary = json.loads((tmp_path / "res" / BEST_PARAMS).read_text())
    result = summary["confirmation"]
    assert result["seeds"] == [0, 1, 2]
    assert result["winner"] == 2
    by_trial = {c["trial"]: c for c in result["configurations"]}
    assert by_trial[2]["val_acc"] == {"0": 0.55, "1": 0.54, "2": 0.56}
    assert by_trial[2]["mean"] == pytest.approx(0.55)
    assert result["verdict"]["difference"] == pytest.approx(0.55 - 0.41)
    low, high = result["verdict"]["interval"]
    assert 0 < low < 0.14 < high
    assert result["verdict"]["significant"] is True


def test_best_env_says_it_holds_the_confirmed_winner(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    write_best(driver.study, tmp_path / "res")
    head = (tmp_path / "res" / BEST_ENV).read_text().splitlines()[0]
    assert head == "# confirmed winner of study t: trial 2, mean val_acc 0.5500 over 3 seeds"


def test_the_baseline_is_exported_when_nothing_beats_its_mean(tmp_path) -> None:
    driver = _driver(tmp_path, NOTHING_BEATS_THE_BASELINE)
    driver.run()
    best = write_best(driver.study, tmp_path / "res")
    assert best is not None and best.number == 0
    assert "MAX_LR=0.01\n" in (tmp_path / "res" / BEST_ENV).read_text()


def test_the_configmap_carries_a_margin_from_the_seed_noise(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    data = yaml.safe_load(configmap(driver.study, "best"))["data"]
    result = confirm.confirmation_of(driver.study)
    assert result is not None and result.noise() is not None
    assert float(data["PROMOTE_MARGIN"]) == pytest.approx(
        confirm.MARGIN_FACTOR * result.noise(), abs=1e-4
    )
    assert data["MAX_LR"] == "0.03"


def test_a_rerun_after_the_phase_runs_nothing_more(tmp_path) -> None:
    _driver(tmp_path, LUCKY).run()
    again = _driver(tmp_path, LUCKY)
    again.run()
    assert again.sibling is not None
    assert len(again.sibling.get_trials(deepcopy=False)) == sum(PLANNED.values())


def test_confirm_0_runs_no_phase(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY, confirm=0)
    driver.run()
    assert driver.sibling is None
    assert confirmation.find_sibling(driver.study) is None


# -- drivers in processes of their own ------------------------------------------------------

DRIVE = """
import json, sys
from pathlib import Path
from tests.search.test_confirm import _driver, LUCKY, _env
folder, url, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
_driver(folder, LUCKY, storage=url, job_env=_env(LUCKY, seconds)).run()
"""


def _spawn(tmp_path: Path, url: str | None = None, seconds: float = 0.0) -> subprocess.Popen:
    """A driver process on the study in ``tmp_path`` or ``url`` (created and queued here
    first, so drivers starting together queue nothing twice)."""
    url = url or f"sqlite:///{tmp_path / 'study.db'}"
    _driver(tmp_path, LUCKY, storage=url)
    return subprocess.Popen(
        [sys.executable, "-c", DRIVE, str(tmp_path), url, str(seconds)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_a_running_confirmation(tmp_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    folder = tmp_path / "out" / "confirm"
    while time.monotonic() < deadline:
        if folder.is_dir() and any((run / "pid").is_file() for run in folder.iterdir()):
            return
        time.sleep(0.1)
    raise AssertionError("no confirmation run started")


def test_a_driver_killed_during_the_phase_is_finished_by_a_rerun_each_run_once(
    tmp_path,
) -> None:
    victim = _spawn(tmp_path, seconds=30)
    try:
        _wait_for_a_running_confirmation(tmp_path)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    for pid_file in (tmp_path / "out" / "confirm").glob("*/pid"):
        pid = int(pid_file.read_text())
        if alive(pid):  # the dead driver's orphaned job: it is not what is under test
            os.kill(pid, signal.SIGKILL)
    rerun = _driver(tmp_path, LUCKY)
    rerun.run()
    assert rerun.sibling is not None
    assert _runs(rerun.sibling) == PLANNED


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from empty_database(request.param, tmp_path)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_two_drivers_share_the_phase_without_duplicates(tmp_path, database_url) -> None:
    drivers = [_spawn(tmp_path, database_url, seconds=1.0) for _ in range(2)]
    errors = [d.communicate(timeout=300)[1] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], errors
    sibling = confirmation.find_sibling(load(tmp_path, "t", storage=database_url))
    assert sibling is not None
    assert Counter(_runs(sibling)) == PLANNED
    executed = [run for run in (tmp_path / "out" / "confirm").iterdir() if (run / "pid").exists()]
    assert len(executed) == sum(PLANNED.values())


# -- statistics -----------------------------------------------------------------------------


def _confirmation(challenger: list[float], baseline: list[float]) -> confirm.Confirmation:
    c = confirm.Configuration(5, {"max_lr": 0.03}, list(challenger))
    b = confirm.Configuration(0, {"max_lr": 0.01}, list(baseline))
    return confirm.Confirmation([0, 1, 2], [c, b], b, c)


def test_the_interval_is_the_paired_t_interval() -> None:
    # differences 0.02, 0.03, 0.04: mean 0.03, sd 0.01, t(0.975, 2) = 4.303
    result = _confirmation([0.52, 0.53, 0.54], [0.50, 0.50, 0.50])
    low, high = result.interval() or (0, 0)
    half = 4.303 * 0.01 / 3**0.5
    assert (low, high) == pytest.approx((0.03 - half, 0.03 + half))


@pytest.mark.parametrize(
    ("challenger", "significant"),
    [([0.52, 0.53, 0.54], True), ([0.52, 0.47, 0.54], False), ([0.46, 0.47, 0.48], True)],
)
def test_significant_means_the_interval_excludes_zero(challenger, significant) -> None:
    verdict = _confirmation(challenger, [0.50, 0.50, 0.50]).verdict()
    assert verdict is not None and verdict["significant"] is significant


def test_the_verdict_line_reads_as_documented() -> None:
    line = _confirmation([0.52, 0.53, 0.54], [0.50, 0.50, 0.50]).line()
    assert line == (
        "trial 5: 0.530 ± 0.010 over 3 seeds vs baseline 0.500 ± 0.000: +0.030 "
        "(95 % interval +0.005..+0.055)"
    )


def test_a_missing_run_is_left_out_of_the_pairs() -> None:
    result = _confirmation([0.52, None, 0.54], [0.50, 0.50, 0.50])  # type: ignore[list-item]
    assert result.differences() == pytest.approx([0.02, 0.04])


def test_the_seeds_start_with_the_studys_own() -> None:
    assert confirmation.seeds(7, 3) == [7, 8, 9]


def test_a_random_seed_with_the_phase_is_refused_in_one_sentence(tmp_path) -> None:
    args = ["run", "--launcher", "local", "--gpus", "none", "--output", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "search", *args, "--job-env", "SEED=random", "--confirm", "2"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "SEED must be a whole number" in done.stderr and "--confirm 0" in done.stderr


def test_progress_lines_count_the_confirmations(tmp_path) -> None:
    from search.progress import Progress

    driver = _driver(tmp_path, LUCKY)
    lines: list[str] = []
    driver.run(on_trial=Progress(driver.study, 4, lines.append, driver.confirmations))
    confirming = [line for line in lines if "confirmations" in line]
    assert [line.split(" ", 1)[0] for line in confirming] == [f"{k}/6" for k in range(1, 7)]
    assert re.match(
        r"^1/6 confirmations \| run 0 confirms trial \d, seed [12]: COMPLETE", confirming[0]
    )


def test_the_margin_is_a_job_variable() -> None:
    from job.contract import VARIABLE_NAMES

    assert "PROMOTE_MARGIN" in VARIABLE_NAMES


def test_a_driver_stopped_during_the_phase_leaves_its_runs_queued(tmp_path) -> None:
    import threading

    driver = _driver(tmp_path, LUCKY, job_env=_env(LUCKY, confirm_seconds=30))
    worker = threading.Thread(target=driver.run)
    worker.start()
    try:
        _wait_for_a_running_confirmation(tmp_path)
    finally:
        driver.stop()
        worker.join(timeout=60)
    assert driver.confirmation_pending()
    rerun = _driver(tmp_path, LUCKY)
    rerun.run()
    assert not rerun.confirmation_pending()
    assert rerun.sibling is not None and _runs(rerun.sibling) == PLANNED
