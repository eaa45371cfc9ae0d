"""The confirmation race: the top configurations and the baseline re-run on fresh seeds in
rounds, those clearly behind dropped; with the stand-in job whose scores depend on the seed."""

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

from search import confirm, confirm_legacy, racing
from search.driver import Driver
from search.report import BEST_ENV, BEST_PARAMS, configmap, write_best, write_note
from search.study import confirmation
from search.study.reuse import REUSED_FROM
from testkit import alive
from tests.conftest import REPO
from tests.search.helpers import clean_env, empty_database, load, search_cli, stub_driver

LUCKY = {
    # max_lr: val_acc on seed 0 (the study's) then the fresh seeds 1, 2, 3. 0.01 is the
    # baseline (the tutorial's max_lr); 0.02 is lucky on seed 0 (the single-seed best), 0.03
    # has the best fresh mean and beats the baseline clearly: settled after round 2.
    0.01: (0.40, 0.42, 0.41, 0.43),
    0.02: (0.60, 0.45, 0.44, 0.46),
    0.03: (0.55, 0.54, 0.56, 0.55),
    0.04: (0.50, 0.30, 0.30, 0.31),
}
NOTHING_BEATS_THE_BASELINE = {
    0.01: (0.30, 0.52, 0.51, 0.53),
    0.02: (0.60, 0.45, 0.44, 0.46),
    0.03: (0.55, 0.46, 0.45, 0.47),
    0.04: (0.30, 0.30, 0.30, 0.30),
}
DROPS = {
    # with --confirm 3: 0.04 is far behind after round 2 and dropped; 0.02 and 0.03 stay
    # level with the baseline, so round 3 runs them and the baseline.
    0.01: (0.40, 0.44, 0.46, 0.45),
    0.02: (0.60, 0.45, 0.47, 0.46),
    0.03: (0.55, 0.46, 0.45, 0.47),
    0.04: (0.50, 0.10, 0.12, 0.11),
}


def _scores(table: dict[float, tuple[float, ...]]) -> str:
    return " ".join(
        f"{lr:g}@{seed}:{value}" for lr, row in table.items() for seed, value in enumerate(row)
    )


def _env(
    table: dict[float, tuple[float, ...]], confirm_seconds: float = 0, **extra: str
) -> dict[str, str]:
    return {
        "STANDIN_SCORES": _scores(table),
        "STANDIN_CONFIRM_SECONDS": str(confirm_seconds),
        **extra,
    }


def _driver(tmp_path: Path, table: dict[float, tuple[float, ...]], **overrides) -> Driver:
    """A 4-trial study of the baseline then max_lr 0.02, 0.03, 0.04; the top 2 raced over 3
    fresh seeds."""
    settings = {"confirm": 2, "confirm_seeds": 3, "job_env": _env(table), **overrides}
    driver = stub_driver(tmp_path, "*=scored", **{"trials": 4, **settings})
    _queue(driver.study)
    return driver


def _queue(study: optuna.Study, rates: tuple[float, ...] = (0.02, 0.03, 0.04)) -> None:
    if len(study.get_trials(deepcopy=False)) == 1:  # the baseline alone: queue the others
        for lr in rates:
            study.enqueue_trial({"max_lr": lr})


def _runs(sibling: optuna.Study) -> Counter:
    """How many COMPLETE runs each (confirmed trial, seed) has."""
    return Counter(
        (t.params[confirmation.CONFIRMS], t.params[confirmation.SEED])
        for t in sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )


PLANNED = Counter({(n, s): 1 for n in (0, 1, 2) for s in (1, 2)})
"""The lucky study's race: trials 1 and 2 (the top 2) and 0 (the baseline) on fresh seeds 1
and 2; trial 1 is dropped and trial 2 beats the baseline after round 2, so no round 3."""


def _summary(tmp_path: Path, driver: Driver) -> dict:
    write_best(driver.study, tmp_path / "res")
    return json.loads((tmp_path / "res" / BEST_PARAMS).read_text())


def test_the_confirmed_winner_is_the_best_fresh_mean_not_the_single_seed_best(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    best = write_best(driver.study, tmp_path / "res")
    assert driver.study.best_trial.number == 1  # max_lr 0.02, lucky on seed 0
    assert best is not None and best.number == 2
    assert best.params == {"max_lr": 0.03}


def test_each_planned_run_completes_once_and_the_race_stops_when_settled(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    assert driver.sibling is not None
    assert _runs(driver.sibling) == PLANNED


def test_a_configuration_clearly_behind_is_dropped_and_the_rest_race_on(tmp_path) -> None:
    driver = _driver(tmp_path, DROPS, confirm=3)
    driver.run()
    assert driver.sibling is not None
    rounds_1_2 = {(n, s): 1 for n in (0, 1, 2, 3) for s in (1, 2)}
    assert _runs(driver.sibling) == Counter({**rounds_1_2, (0, 3): 1, (1, 3): 1, (2, 3): 1})
    result = _summary(tmp_path, driver)["confirmation"]
    dropped = {c["trial"]: c["dropped"] for c in result["configurations"]}
    assert dropped == {0: None, 1: None, 2: None, 3: 2}


def test_the_selection_seed_is_set_aside(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY, job_env=_env(LUCKY), confirm_seeds=3)
    driver.run()
    assert driver.sibling is not None
    assert {seed for _, seed in _runs(driver.sibling)} == {1, 2}
    result = _summary(tmp_path, driver)["confirmation"]
    assert result["seeds"] == [1, 2, 3]
    assert result["verdict"]["seeds"] == [1, 2]
    by_trial = {c["trial"]: c for c in result["configurations"]}
    assert by_trial[1]["study_value"] == 0.60
    assert by_trial[1]["mean"] == pytest.approx(0.445)


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
    result = _summary(tmp_path, driver)["confirmation"]
    assert result["policy"] == {"configurations": 2, "seeds": 3}
    assert (result["winner"], result["baseline"], result["rounds"]) == (2, 0, 2)
    by_trial = {c["trial"]: c for c in result["configurations"]}
    assert by_trial[2]["val_acc"] == {"1": 0.54, "2": 0.56}
    assert by_trial[2]["mean"] == pytest.approx(0.55)
    assert result["verdict"]["difference"] == pytest.approx(0.55 - 0.415)
    low, high = result["verdict"]["interval"]
    assert 0 < low < 0.135 < high
    assert result["verdict"]["significant"] is True and result["verdict"]["claim"] is True
    assert result["noise"]["df"] == 2 and result["noise"]["std"] > 0
    assert "two-way" in result["noise"]["method"]
    assert result["reused"] == 0


def test_best_env_says_it_holds_the_confirmed_winner(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    write_best(driver.study, tmp_path / "res")
    head = (tmp_path / "res" / BEST_ENV).read_text().splitlines()[0]
    assert head == "# confirmed winner of study t: trial 2, mean val_acc 0.5500 over 2 fresh seeds"


def test_the_baseline_is_exported_when_nothing_beats_its_fresh_mean(tmp_path) -> None:
    driver = _driver(tmp_path, NOTHING_BEATS_THE_BASELINE)
    driver.run()
    best = write_best(driver.study, tmp_path / "res")
    assert best is not None and best.number == 0
    assert "MAX_LR=0.01\n" in (tmp_path / "res" / BEST_ENV).read_text()


def test_the_configmap_carries_a_margin_from_the_pooled_noise(tmp_path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    data = yaml.safe_load(configmap(driver.study, "best"))["data"]
    result = confirm.confirmation_of(driver.study)
    assert isinstance(result, confirm.Confirmation) and result.standing.noise is not None
    expected = racing.promote_margin(result.standing.noise, result.standing.df)
    assert float(data["PROMOTE_MARGIN"]) == pytest.approx(expected, abs=1e-4)
    assert data["MAX_LR"] == "0.03"


def test_the_note_and_the_verdict_name_the_dropped_round(tmp_path) -> None:
    driver = _driver(tmp_path, DROPS, confirm=3)
    driver.run()
    result = confirm.confirmation_of(driver.study)
    assert result is not None
    assert result.summary().endswith("; dropped: trial 3 after round 2")
    assert "| 3 | 0.5000 | 0.1000 | 0.1200 | – |" in result.markdown()
    assert "| round 2 |" in result.markdown()


def test_a_rerun_after_the_phase_runs_nothing_more(tmp_path) -> None:
    _driver(tmp_path, LUCKY).run()
    again = _driver(tmp_path, LUCKY)
    again.run()
    assert again.sibling is not None
    assert len(again.sibling.get_trials(deepcopy=False)) == sum(PLANNED.values())


def test_trials_raised_later_race_a_configuration_that_entered_the_top(tmp_path) -> None:
    table = {**LUCKY, 0.05: (0.70, 0.57, 0.58, 0.57)}
    first = stub_driver(tmp_path, "*=scored", trials=4, confirm=2, job_env=_env(table))
    _queue(first.study, (0.02, 0.03, 0.04, 0.05))
    first.run()
    assert first.sibling is not None and (3, 1) not in _runs(first.sibling)
    raised = stub_driver(tmp_path, "*=scored", trials=5, confirm=2, job_env=_env(table))
    raised.run()
    assert raised.sibling is not None
    assert {(4, 1), (4, 2)} <= set(_runs(raised.sibling))  # trial 4, max_lr 0.05: the best
    assert max(_runs(raised.sibling).values()) == 1
    best = write_best(raised.study, tmp_path / "res")
    assert best is not None and best.number == 4


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


# -- settings -------------------------------------------------------------------------------


def _refused(*extra: str) -> subprocess.CompletedProcess[str]:
    args = ["run", "--launcher", "local", "--gpus", "none", "--output", "/nonexistent/out"]
    return subprocess.run(
        [sys.executable, "-m", "search", *args, *extra],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (
            ("--job-env", "SEED=random", "--confirm", "2"),
            ("SEED must be a whole number", "--confirm 0"),
        ),
        (
            ("--confirm", "2", "--confirm-seeds", "1"),
            ("no degrees of freedom", "--confirm-seeds 2"),
        ),
    ],
    ids=["a random SEED", "one fresh seed"],
)
def test_a_phase_that_cannot_decide_is_refused_in_one_sentence(extra, says) -> None:
    done = _refused(*extra)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert all(part in done.stderr for part in says)
    assert not Path("/nonexistent/out").exists()


def test_the_fresh_seeds_follow_the_studys_own() -> None:
    assert confirmation.seeds(7, 3) == [8, 9, 10]


def test_progress_lines_name_the_round_and_the_runs_at_most(tmp_path) -> None:
    from search.progress import Progress

    driver = _driver(tmp_path, LUCKY)
    lines: list[str] = []
    driver.run(on_trial=Progress(driver.study, 4, lines.append, driver.confirmations))
    confirming = [line.split(" | run ")[0] for line in lines if "confirmations" in line]
    # 3 configurations × 3 seeds at most until round 2 ends it at 6 runs
    assert confirming == [f"round 1 of 3 | {k}/9 confirmations at most" for k in (1, 2, 3)] + [
        f"round 2 of 3 | {k}/9 confirmations at most" for k in (4, 5)
    ] + ["round 2 of 3 | 6/6 confirmations at most"]
    assert re.match(r"^round 1 of 3 \| 1/9 .* confirms trial \d, seed 1: COMPLETE", lines[4])


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


# -- baseline runs reused across studies ----------------------------------------------------


def _second_study(tmp_path: Path, **job: str) -> Driver:
    """Study ``u`` beside ``t`` in the same database (its own output), after ``t`` raced."""
    _driver(tmp_path, LUCKY).run()
    driver = _driver(
        tmp_path / "u",
        LUCKY,
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        study_name="u",
        job_env=_env(LUCKY, **job),
    )
    driver.run()
    return driver


def test_a_later_study_reuses_the_baseline_runs_of_an_earlier_one(tmp_path) -> None:
    driver = _second_study(tmp_path)
    assert driver.sibling is not None
    baseline_runs = [
        t for t in driver.sibling.get_trials(deepcopy=False) if t.params["confirms"] == 0
    ]
    origins = [t.user_attrs.get(REUSED_FROM, "") for t in baseline_runs]
    assert len(origins) == 2 and all(o.startswith("t.confirm#") for o in origins)
    executed = [r for r in (tmp_path / "u" / "out" / "confirm").iterdir() if (r / "pid").exists()]
    assert len(executed) == 4  # the two challengers' runs; the baseline's were not run again
    assert _runs(driver.sibling) == PLANNED  # each counted once
    assert _summary(tmp_path, driver)["confirmation"]["reused"] == 2


@pytest.mark.parametrize(
    "job",
    [{"STANDIN_CODE_SHA256": "1" * 64}, {"STANDIN_DATA_SHA256": "2" * 64}, {"EPOCHS": "3"}],
    ids=["other code", "other data", "other job settings"],
)
def test_a_baseline_run_that_differs_is_not_reused(tmp_path, job) -> None:
    driver = _second_study(tmp_path, **job)
    assert driver.sibling is not None
    assert confirmation.reused(driver.sibling.get_trials(deepcopy=False)) == 0
    assert _runs(driver.sibling) == PLANNED


# -- a study confirmed before rounds --------------------------------------------------------


def _legacy_study(tmp_path: Path) -> optuna.Study:
    """A study confirmed by the phase before rounds: seeds [0, 1, 2], the study's own first,
    every configuration on every seed, no policy recorded."""
    driver = _driver(tmp_path, LUCKY, confirm=0)
    driver.run()
    sibling = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="t.confirm", direction="maximize"
    )
    for t in driver.study.get_trials(deepcopy=False)[:3]:
        for seed in (1, 2):
            sibling.add_trial(
                optuna.trial.create_trial(
                    params={**t.params, "confirms": t.number, "seed": seed},
                    distributions={
                        **t.distributions,
                        "confirms": confirmation.NUMBER,
                        "seed": confirmation.NUMBER,
                    },
                    value=LUCKY[t.params["max_lr"]][seed],
                )
            )
    sibling.set_user_attr("plan", {"trials": [1, 2, 0], "baseline": 0, "seeds": [0, 1, 2]})
    return driver.study


def test_a_study_confirmed_before_rounds_still_reads(tmp_path) -> None:
    study = _legacy_study(tmp_path)
    result = confirm.confirmation_of(study)
    assert isinstance(result, confirm_legacy.Confirmation)
    write_best(study, tmp_path / "res")
    summary = json.loads((tmp_path / "res" / BEST_PARAMS).read_text())["confirmation"]
    assert summary["seeds"] == [0, 1, 2] and summary["winner"] == 2
    # today's paired t over seeds 0, 1, 2: differences 0.15, 0.12, 0.15
    low, high = summary["verdict"]["interval"]
    assert (low + high) / 2 == pytest.approx(0.14)
    write_note(study, result)


def test_search_best_reads_a_study_confirmed_before_rounds(tmp_path) -> None:
    _legacy_study(tmp_path)
    done = search_cli("best", "--output", str(tmp_path), "--study-name", "t")
    assert done.returncode == 0, done.stderr
    assert "confirmed over seeds [0, 1, 2]: trial 2: 0.550 ± 0.010 over 3 seeds" in done.stderr


def test_the_legacy_interval_is_the_paired_t_interval() -> None:
    # differences 0.02, 0.03, 0.04: mean 0.03, sd 0.01, t(0.975, 2) = 4.303
    c = confirm_legacy.Configuration(5, {"max_lr": 0.03}, [0.52, 0.53, 0.54])
    b = confirm_legacy.Configuration(0, {"max_lr": 0.01}, [0.50, 0.50, 0.50])
    low, high = confirm_legacy.Confirmation([0, 1, 2], [c, b], b, c).interval() or (0, 0)
    half = 4.303 * 0.01 / 3**0.5
    assert (low, high) == pytest.approx((0.03 - half, 0.03 + half), abs=1e-4)
