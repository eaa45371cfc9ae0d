"""The search space: defaults, files, validation."""

from __future__ import annotations

import json

import optuna
import pytest

from search.space import (
    TUTORIAL_DEFAULTS,
    SpaceError,
    build_space,
    default_space,
    load_space,
    to_env,
)


def test_default_space_tunes_the_four_recipe_parameters() -> None:
    space = default_space()
    assert set(space.distributions) == {"max_lr", "weight_decay", "grad_clip", "batch_size"}
    assert space.distributions["batch_size"].choices == (128, 256, 400, 512)
    assert space.distributions["max_lr"].log


def test_baseline_is_the_tutorial_recipe() -> None:
    assert (
        default_space().baseline()
        == TUTORIAL_DEFAULTS
        == {
            "max_lr": 0.01,
            "weight_decay": 1e-4,
            "grad_clip": 0.1,
            "batch_size": 400,
        }
    )


def test_baseline_leaves_out_a_default_the_space_excludes() -> None:
    space = build_space({"batch_size": {"choices": [64, 128]}, "max_lr": {"low": 1e-3, "high": 1}})
    assert space.baseline() == {"max_lr": 0.01}


def test_to_env_names_job_variables() -> None:
    env = to_env({"max_lr": 0.02, "batch_size": 256, "optimizer": "sgd"})
    assert env == {"MAX_LR": "0.02", "BATCH_SIZE": "256", "OPTIMIZER": "sgd"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_space_file_replaces_the_default(tmp_path, suffix: str) -> None:
    raw = {"max_lr": {"low": 0.001, "high": 0.05, "log": True}, "optimizer": {"choices": ["adam"]}}
    path = tmp_path / f"space{suffix}"
    path.write_text(json.dumps(raw))  # JSON is also YAML
    space = load_space(path)
    assert set(space.distributions) == {"max_lr", "optimizer"}
    assert space.job_vars() == {"MAX_LR", "OPTIMIZER"}


def test_suggest_draws_inside_the_space() -> None:
    space = build_space(
        {"max_lr": {"low": 1e-3, "high": 1e-2, "log": True}, "epochs": {"low": 2, "high": 4}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    params = space.suggest(study.ask())
    assert 1e-3 <= params["max_lr"] <= 1e-2
    assert params["epochs"] in (2, 3, 4)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"momentum": {"low": 0.1, "high": 0.9}}, "unknown parameter 'momentum'"),
        ({"max_lr": {"low": 0.1, "high": 0.1}}, "empty range"),
        ({"max_lr": {"low": 0.5, "high": 0.1}}, "empty range"),
        ({"max_lr": {"low": 0, "high": 0.1, "log": True}}, "low must be above 0"),
        ({"batch_size": {"choices": []}}, "empty list of choices"),
        ({"max_lr": {"low": 0.1}}, "needs both low and high"),
        ({"max_lr": {"low": "a", "high": 1}}, "non-numeric"),
        ({"max_lr": {"low": 0.1, "high": 1, "scale": "log"}}, "unknown keys: scale"),
        ({"max_lr": 0.1}, "needs a mapping"),
    ],
)
def test_invalid_space_is_rejected_with_a_sentence(raw: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        build_space(raw)


@pytest.mark.parametrize(
    ("text", "message"), [("max_lr: [1, 2", "not valid YAML"), ("[]", "must map parameter")]
)
def test_invalid_space_file_is_rejected(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        load_space(path)
