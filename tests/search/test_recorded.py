"""search.study.record and search.study.fresh, through search.study.open_study: a study
records what it was started with, refuses a run with other settings (exit 2, one sentence,
nothing written), and ``--fresh`` keeps the old study's results before starting anew; on real
SQLite and PostgreSQL databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.settings import Settings, SettingsError, build_settings
from search.storage import make_storage
from search.study import load_study, open_study
from search.study.record import RECORD, record_of
from tests.search.helpers import empty_database, run_together

SPACE_FILE = "max_lr: {low: 0.002, high: 0.05, log: true}\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of each kind."""
    yield from empty_database(request.param, tmp_path)


def _settings(tmp_path: Path, url: str, *job_env: str, **options: Any) -> Settings:
    """The settings ``search run`` builds from these options (local launcher, no GPU)."""
    given = {
        "launcher": "local",
        "gpus": "none",
        "output": tmp_path / "out",
        "storage": url,
        "job_env": job_env,
        "confirm": 0,
        **options,
    }
    return build_settings(given, print)


def _prepare(settings: Settings) -> list[str]:
    said: list[str] = []
    open_study(settings, said.append)
    return said


@pytest.mark.parametrize(
    ("first", "then", "difference"),
    [
        (
            {"job_env": ("EPOCHS=4",)},
            {"job_env": ("EPOCHS=8",)},
            "was started with EPOCHS=4, not EPOCHS=8",
        ),
        (
            {"job_env": ("EPOCHS=4",)},
            {"job_env": ()},  # the job's default, 8
            "was started with EPOCHS=4, not EPOCHS=8",
        ),
        (
            {"job_env": ("MODEL_WIDTH=0.25", "TRAIN_LIMIT=5000")},
            {"job_env": ("MODEL_WIDTH=0.5", "TRAIN_LIMIT=5000")},
            "was started with MODEL_WIDTH=0.25, not MODEL_WIDTH=0.5",
        ),
        (
            {},
            {"space": "space"},
            "was started with max_lr: {low: 0.001, high: 0.1, log: true}, not "
            "max_lr: {low: 0.002, high: 0.05, log: true}",
        ),
        (
            {},
            {"pruner": "hyperband"},
            "was started with pruner median, not pruner hyperband",
        ),
    ],
    ids=["job-env", "job-env-default", "one-of-two", "space", "pruner"],
)
def test_a_run_with_other_settings_is_refused_naming_the_difference(
    tmp_path: Path, url: str, first: dict, then: dict, difference: str
) -> None:
    (tmp_path / "space").write_text(SPACE_FILE)

    def options(given: dict) -> dict:
        job_env = given.get("job_env", ())
        rest = {k: v for k, v in given.items() if k != "job_env"}
        if "space" in rest:
            rest["space"] = tmp_path / rest["space"]
        return {"job_env": job_env, **rest}

    first_options, then_options = options(first), options(then)
    _prepare(_settings(tmp_path, url, *first_options.pop("job_env"), **first_options))
    with pytest.raises(SettingsError) as refused:
        _prepare(_settings(tmp_path, url, *then_options.pop("job_env"), **then_options))
    sentence = str(refused.value)
    assert sentence.startswith(f"the study 'resnet-job' {difference};")
    assert "--study-name NEW" in sentence and "--fresh" in sentence
    assert "\n" not in sentence


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (("EPOCHS=4",), ("EPOCHS=4",)),
        ((), ("EPOCHS=8",)),  # the default, given or not
        (("MODEL_WIDTH=0.25",), ("MODEL_WIDTH=.25",)),  # the same number
        (("DEVICE=cpu",), ("DEVICE=auto",)),  # where it runs does not change the result
        (("SEED=0",), ("SEED=0", "PROGRESS_SECONDS=5")),
    ],
    ids=["same", "default", "same-value", "device", "not-shaping"],
)
def test_a_run_with_the_same_settings_is_accepted(
    tmp_path: Path, url: str, first: tuple[str, ...], then: tuple[str, ...]
) -> None:
    _prepare(_settings(tmp_path, url, *first))
    recorded = load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD]
    assert _prepare(_settings(tmp_path, url, *then)) == []
    assert load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD] == recorded


def test_the_record_holds_the_job_variables_that_shape_the_result_space_and_pruner(
    tmp_path: Path, url: str
) -> None:
    settings = _settings(tmp_path, url, "EPOCHS=4", "DEVICE=cpu", f"DATA_DIR={tmp_path}")
    _prepare(settings)
    record = load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD]
    assert record == record_of(settings)
    assert record["job"]["EPOCHS"] == "4" and record["job"]["MODEL_WIDTH"] == "1.0"
    assert "MAX_LR" not in record["job"]  # tuned by the space
    assert "DEVICE" not in record["job"] and record["job_env"] == {"DEVICE": "cpu"}
    assert record["space"]["batch_size"] == {"choices": [128, 256, 400, 512]}
    assert (record["pruner"], record["sampler"]) == ("median", "tpe")


def test_the_record_keeps_no_password_of_a_data_url(tmp_path: Path, url: str) -> None:
    data_url = "https://reader:S3cret-pw@example.com/cifar10.tgz"
    _prepare(_settings(tmp_path, url, f"DATA_URL={data_url}"))
    record = load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD]
    assert record["job_env"]["DATA_URL"] == "https://reader:***@example.com/cifar10.tgz"


def _trial(value: float) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE,
        value=value,
        params={"max_lr": 0.01},
        distributions={"max_lr": FloatDistribution(1e-3, 1e-1, log=True)},
    )


def test_fresh_keeps_the_old_study_and_its_files_and_starts_an_empty_one(
    tmp_path: Path, url: str
) -> None:
    _prepare(_settings(tmp_path, url, "EPOCHS=4"))
    old = load_study(url, "resnet-job", retry_seconds=60)
    old.add_trials([_trial(0.4), _trial(0.5)])
    sibling = optuna.create_study(
        storage=make_storage(url, retry_seconds=60), study_name="resnet-job.confirm"
    )
    sibling.add_trial(_trial(0.45))
    out = tmp_path / "out"
    (out / "trials" / "0").mkdir(parents=True)
    (out / "trials" / "0" / "checkpoint.pt").write_text("old")
    (out / "best.env").write_text("MAX_LR=0.01\n")

    said = _prepare(_settings(tmp_path, url, "EPOCHS=8", fresh=True))

    names = set(optuna.get_all_study_names(make_storage(url, retry_seconds=60)))
    kept = next(n for n in names if n.startswith("resnet-job-") and not n.endswith(".confirm"))
    assert names == {"resnet-job", kept, f"{kept}.confirm"}
    # the baseline the first run queued, then the two added
    assert [t.value for t in load_study(url, kept, retry_seconds=60).trials] == [None, 0.4, 0.5]
    assert [t.value for t in load_study(url, f"{kept}.confirm", retry_seconds=60).trials] == [0.45]
    assert load_study(url, kept, retry_seconds=60).user_attrs[RECORD]["job"]["EPOCHS"] == "4"
    new = load_study(url, "resnet-job", retry_seconds=60)
    assert [t.state for t in new.trials] == [TrialState.WAITING]  # the baseline, queued
    assert new.user_attrs[RECORD]["job"]["EPOCHS"] == "8"
    assert (out / kept / "trials" / "0" / "checkpoint.pt").read_text() == "old"
    assert (out / kept / "best.env").is_file()
    assert not (out / "trials").exists() and not (out / "best.env").exists()
    assert said == [
        f"--fresh: kept the study 'resnet-job' (3 trials) as {kept!r} and its files in "
        f"{out / kept}; starting a new study 'resnet-job'."
    ]


def test_fresh_on_a_study_without_trials_only_records_the_new_settings(
    tmp_path: Path, url: str
) -> None:
    _prepare(_settings(tmp_path, url, "EPOCHS=4"))
    assert _prepare(_settings(tmp_path, url, "EPOCHS=8", fresh=True)) == []
    assert optuna.get_all_study_names(make_storage(url, retry_seconds=60)) == ["resnet-job"]
    assert (
        load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD]["job"]["EPOCHS"] == "8"
    )


def test_a_new_study_is_refused_over_another_studys_trial_folders(tmp_path: Path, url: str) -> None:
    (tmp_path / "out" / "trials" / "0").mkdir(parents=True)
    with pytest.raises(SettingsError, match=r"holds the trial folders of an earlier study"):
        _prepare(_settings(tmp_path, url))
    assert optuna.get_all_study_names(make_storage(url, retry_seconds=60)) == []


def test_a_study_recorded_before_records_existed_adopts_the_runs_settings(
    tmp_path: Path, url: str
) -> None:
    optuna.create_study(
        storage=make_storage(url, retry_seconds=60), study_name="resnet-job"
    ).add_trial(_trial(0.4))
    settings = _settings(tmp_path, url, "EPOCHS=4")
    _prepare(settings)
    assert load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD] == record_of(settings)


PREPARE = """
import sys, time
from pathlib import Path
from search.settings import build_settings
from search.study import open_study
url, output, start = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
options = dict(launcher="local", gpus="none", output=output, storage=url, confirm=0,
               job_env=("EPOCHS=4",))
settings = build_settings(options, print)
time.sleep(max(0.0, start - time.time()))  # all of them at the same moment
open_study(settings, print)
"""


def test_drivers_creating_one_study_together_do_not_refuse_each_other(
    tmp_path: Path, url: str
) -> None:
    start = time.time() + 5  # seconds: every interpreter has imported Optuna by then
    results = run_together(PREPARE, url, str(tmp_path / "out"), str(start))
    assert [code for code, _ in results] == [0] * 4, [err for _, err in results]
    assert optuna.get_all_study_names(make_storage(url, retry_seconds=60)) == ["resnet-job"]
    assert (
        load_study(url, "resnet-job", retry_seconds=60).user_attrs[RECORD]["job"]["EPOCHS"] == "4"
    )


def test_a_study_made_without_an_objective_name_gets_val_acc(tmp_path: Path) -> None:
    """A study that names no objective (made by Optuna alone, or before names) is given
    ``val_acc`` when a driver opens it, so the dashboard never says "Objective 0"."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=url, study_name="resnet-job", direction="maximize")
    assert optuna.load_study(study_name="resnet-job", storage=url).metric_names is None
    _prepare(_settings(tmp_path, url))
    assert optuna.load_study(study_name="resnet-job", storage=url).metric_names == ["val_acc"]
