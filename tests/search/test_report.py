"""search.report: the result files of a real Optuna study on SQLite (best parameters, the
env file, the ConfigMap, trials.csv, the plots)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.report import (
    BEST_ENV,
    BEST_PARAMS,
    PLOTS,
    TRIALS_CSV,
    baseline_trial,
    configmap,
    summary_table,
    trials_frame,
    write_best,
    write_configmap,
    write_report,
)
from search.settings import Settings
from search.space import build_space, to_env
from search.storage import Requeue
from search.study.record import RECORD, record_of

DISTRIBUTIONS = {
    "max_lr": FloatDistribution(1e-3, 1e-1, log=True),
    "optimizer": CategoricalDistribution(["sgd", "adamw"]),
    "epochs": CategoricalDistribution([2, 3]),
}
RECIPE = {"max_lr": 0.01, "optimizer": "sgd"}

Trial = tuple[TrialState, float | None, dict[str, Any]]


def _study(tmp_path: Path, trials: Sequence[Trial]) -> optuna.Study:
    """A maximising study on SQLite in ``tmp_path`` holding ``trials`` (state, value, params)."""
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s", direction="maximize"
    )
    for number, (state, value, params) in enumerate(trials):
        study.add_trial(
            create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=params,
                distributions={k: DISTRIBUTIONS[k] for k in params},
                user_attrs={"epochs": number + 1},
                intermediate_values={1: 0.1, 2: 0.2},
            )
        )
    return study


def _done(value: float, **params: Any) -> Trial:
    return (TrialState.COMPLETE, value, {**RECIPE, **params})


def _failed(**params: Any) -> Trial:
    return (TrialState.FAIL, None, {**RECIPE, **params})


@pytest.mark.parametrize(
    "trials", [[], [_failed()], [_failed(), (TrialState.PRUNED, None, {"max_lr": 0.02})]]
)
def test_no_best_is_written_before_a_trial_completes(tmp_path: Path, trials) -> None:
    study = _study(tmp_path, trials)
    out = tmp_path / "out"
    assert write_best(study, out) is None
    assert not out.exists()


@pytest.mark.parametrize(
    ("values", "best", "improvement"),
    [([0.8, 0.9], 1, 0.1), ([0.9, 0.8], 0, 0.0), ([0.7, 0.6, 0.95], 2, 0.25)],
)
def test_best_params_hold_the_best_and_its_gain_over_the_baseline(
    tmp_path: Path, values: list[float], best: int, improvement: float
) -> None:
    trials = [_done(v, max_lr=0.01 * (i + 1)) for i, v in enumerate(values)]
    study = _study(tmp_path, trials)
    assert write_best(study, tmp_path).number == best
    summary = json.loads((tmp_path / BEST_PARAMS).read_text())
    assert summary["trial"] == best
    assert summary["val_acc"] == values[best]
    assert summary["env"] == to_env(trials[best][2])
    assert summary["baseline"] == {"trial": 0, "val_acc": values[0]}
    assert summary["improvement"] == pytest.approx(improvement)


def test_without_a_completed_baseline_there_is_no_improvement(tmp_path: Path) -> None:
    study = _study(tmp_path, [_failed(), _done(0.9, max_lr=0.05)])
    write_best(study, tmp_path)
    summary = json.loads((tmp_path / BEST_PARAMS).read_text())
    assert (summary["baseline"], summary["improvement"]) == (None, None)


@pytest.mark.parametrize(
    ("trials", "baseline"),
    [
        ([_done(0.5)], 0),
        ([_failed(), _done(0.9, max_lr=0.05), _done(0.6)], 2),  # the recipe's retry
        ([_failed(), _done(0.9, max_lr=0.05)], None),
        ([], None),
    ],
)
def test_the_baseline_is_the_first_completed_run_of_the_recipe(
    tmp_path: Path, trials: list[Trial], baseline: int | None
) -> None:
    found = baseline_trial(_study(tmp_path, trials))
    assert (None if found is None else found.number) == baseline


def test_best_env_is_an_env_file_of_the_best_parameters(tmp_path: Path) -> None:
    study = _study(tmp_path, [_done(0.5), _done(0.75, max_lr=0.05, optimizer="adamw")])
    write_best(study, tmp_path)
    head, *lines = (tmp_path / BEST_ENV).read_text().splitlines()
    assert head == "# best of study s: trial 1, val_acc 0.7500"
    assert dict(line.split("=", 1) for line in lines if not line.startswith("#")) == {
        "MAX_LR": "0.05",
        "OPTIMIZER": "adamw",
    }


def _recorded(study: optuna.Study, space: dict[str, Any], **job_env: str) -> None:
    """Record in ``study`` the settings a driver started with ``job_env`` and ``space`` records."""
    settings = Settings(
        trials=1,
        output=Path(),
        storage="",
        study_name=study.study_name,
        space=build_space(space),
        launcher=None,  # type: ignore[arg-type]
        job_env=job_env,
    )
    study.set_user_attr(RECORD, record_of(settings))


SPACE = {"max_lr": {"low": 1e-3, "high": 1e-1, "log": True}, "optimizer": {"choices": ["sgd"]}}


def test_best_env_carries_the_studys_fixed_settings_beside_the_tuned_ones(tmp_path: Path) -> None:
    study = _study(tmp_path, [_done(0.5), _done(0.75, max_lr=0.05)])
    _recorded(study, SPACE, EPOCHS="4", MODEL_WIDTH="0.25", DEVICE="cpu", SEED="0")
    write_best(study, tmp_path)
    lines = (tmp_path / BEST_ENV).read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    # DEVICE does not shape the result (the machine's choice); SEED=0 is the job's default.
    assert env == {"EPOCHS": "4", "MODEL_WIDTH": "0.25", "MAX_LR": "0.05", "OPTIMIZER": "sgd"}


@pytest.mark.parametrize(
    ("data_url", "exported"),
    [
        ("file:///data/digits", {"DATA_URL": "file:///data/digits"}),
        ("https://example.com/photos.tgz", {"DATA_URL": "https://example.com/photos.tgz"}),
        # The record masks a password; a masked URL would not fetch, so it is left out.
        ("https://reader:secret@example.com/photos.tgz", {}),
    ],
    ids=["folder", "url", "password"],
)
def test_best_env_says_where_the_data_is(
    tmp_path: Path, data_url: str, exported: dict[str, str]
) -> None:
    study = _study(tmp_path, [_done(0.75, max_lr=0.05)])
    _recorded(study, SPACE, DATA_URL=data_url, IMAGE_SIZE="64")
    write_best(study, tmp_path)
    lines = (tmp_path / BEST_ENV).read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    assert env == {**exported, "IMAGE_SIZE": "64", "MAX_LR": "0.05", "OPTIMIZER": "sgd"}


@pytest.mark.parametrize(
    ("job_env", "space", "params", "sentence"),
    [
        (
            {"EPOCHS": "4"},
            SPACE,
            {},
            "# val_acc measured with EPOCHS=4 (the study's budget); this file trains with "
            "EPOCHS=4 unless you change it",
        ),
        (
            {},
            SPACE,
            {},
            "# val_acc measured with EPOCHS=8 (the study's budget); this file trains with "
            "EPOCHS=8 (the job's default) unless you change it",
        ),
        (
            {},
            {**SPACE, "epochs": {"choices": [2, 3]}},
            {"epochs": 3},
            "# val_acc measured with EPOCHS=3 (the study's budget); this file trains with "
            "EPOCHS=3 unless you change it",
        ),
    ],
    ids=["fixed", "default", "tuned"],
)
def test_best_env_says_at_which_epochs_its_val_acc_was_measured(
    tmp_path: Path, job_env: dict[str, str], space: dict[str, Any], params, sentence: str
) -> None:
    study = _study(tmp_path, [_done(0.75, **params)])
    _recorded(study, space, **job_env)
    write_best(study, tmp_path)
    assert (tmp_path / BEST_ENV).read_text().splitlines()[1] == sentence


def test_best_params_hold_the_fixed_settings_and_the_env_that_reruns_the_trial(
    tmp_path: Path,
) -> None:
    study = _study(tmp_path, [_done(0.75, max_lr=0.05)])
    _recorded(study, SPACE, EPOCHS="4", TRAIN_LIMIT="5000")
    write_best(study, tmp_path)
    best = json.loads((tmp_path / BEST_PARAMS).read_text())
    assert best["fixed"]["EPOCHS"] == "4" and best["fixed"]["TRAIN_LIMIT"] == "5000"
    assert best["fixed"]["MODEL_WIDTH"] == "1.0"  # every variable that shapes the result
    assert best["env"] == {
        "EPOCHS": "4",
        "TRAIN_LIMIT": "5000",
        "MAX_LR": "0.05",
        "OPTIMIZER": "sgd",
    }
    assert best["epochs"] == 4


def test_the_summary_is_empty_before_a_trial_completes(tmp_path: Path) -> None:
    assert summary_table(_study(tmp_path, [_failed()])) == ""


@pytest.mark.parametrize(("count", "top", "rows"), [(3, 5, 4), (7, 5, 6), (7, 2, 3), (1, 5, 2)])
def test_the_summary_ranks_the_top_trials_and_adds_the_baseline(
    tmp_path: Path, count: int, top: int, rows: int
) -> None:
    # trial 0 (the baseline) is the worst: it closes the table, after the top ones.
    trials = [_done(0.1 * (i + 1), max_lr=0.001 * (i + 1)) for i in range(count)]
    lines = summary_table(_study(tmp_path, trials), top=top).splitlines()
    assert len(lines) == 1 + rows
    first = lines[1].split()
    assert first[:4] == ["1", str(count - 1), f"{0.1 * count:.4f}", "+0.0000"]
    assert lines[-1].split()[:2] == ["baseline", "0"]


def test_a_configmap_needs_a_completed_trial(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no COMPLETE trial"):
        configmap(_study(tmp_path, [_failed()]), "best")


def test_the_configmap_holds_the_best_parameters_as_job_variables(tmp_path: Path) -> None:
    study = _study(tmp_path, [_done(0.5), _done(0.8, optimizer="adamw")])
    doc = yaml.safe_load(write_configmap(study, tmp_path, "tuned").read_text())
    assert doc["kind"] == "ConfigMap"
    assert doc["metadata"]["name"] == "tuned"
    assert doc["metadata"]["annotations"]["resnet-job/trial"] == "1"
    assert doc["data"] == {"MAX_LR": "0.01", "OPTIMIZER": "adamw"}


def test_trials_csv_has_one_row_per_trial_in_any_state(tmp_path: Path) -> None:
    trials = [_done(0.5), _failed(max_lr=0.02), (TrialState.PRUNED, None, {"max_lr": 0.03})]
    study = _study(tmp_path, trials)
    write_report(study, tmp_path)
    frame = pd.read_csv(tmp_path / TRIALS_CSV)
    assert list(frame["number"]) == [0, 1, 2]
    assert list(frame["state"]) == ["COMPLETE", "FAIL", "PRUNED"]
    assert frame["val_acc"].iloc[0] == 0.5 and frame["val_acc"].iloc[1:].isna().all()
    assert list(frame["best_intermediate"]) == [0.2, 0.2, 0.2]
    assert list(frame["param_max_lr"]) == [0.01, 0.02, 0.03]


def test_a_retry_names_the_trial_it_retries(tmp_path: Path) -> None:
    study = _study(tmp_path, [_done(0.5), _failed(max_lr=0.02)])
    Requeue(retries=1)(study, study.trials[1])
    frame = trials_frame(study)
    assert list(frame["state"]) == ["COMPLETE", "FAIL", "WAITING"]
    assert list(frame["retry_of"].fillna(-1)) == [-1, -1, 1]


@pytest.mark.parametrize("complete", [0, 1, 2])
def test_plots_needing_more_trials_are_skipped_with_a_note(tmp_path: Path, complete: int) -> None:
    trials = [_done(0.5 + 0.1 * i, max_lr=0.01 * (i + 1)) for i in range(complete)]
    notes = write_report(_study(tmp_path, [*trials, _failed()]), tmp_path)
    skipped = {note.split(":")[0] for note in notes}
    assert skipped == {stem for stem, (_, needs) in PLOTS.items() if complete < needs}
    written = {p.stem for p in (tmp_path / "plots").glob("*.png")}
    assert written == set(PLOTS) - skipped
    assert (tmp_path / "plots" / "NOTES.txt").read_text().splitlines() == notes
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        [*(f"{stem}.png" for stem in written), "NOTES.txt"]
    )  # no half-written file left behind
