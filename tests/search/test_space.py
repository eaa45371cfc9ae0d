"""The search space: defaults, files, validation."""

from __future__ import annotations

import json
import re

import optuna
import pytest

from search.space import (
    DEFAULT_SPACE,
    TUTORIAL_DEFAULTS,
    SpaceError,
    build_space,
    default_space,
    describe,
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
def test_a_space_file_with_replace_true_replaces_the_default(tmp_path, suffix: str) -> None:
    raw = {
        "replace": True,
        "max_lr": {"low": 0.001, "high": 0.05, "log": True},
        "optimizer": {"choices": ["adam"]},
    }
    path = tmp_path / f"space{suffix}"
    path.write_text(json.dumps(raw))  # JSON is also YAML
    space = load_space(path)
    assert set(space.distributions) == {"max_lr", "optimizer"}
    assert space.job_vars() == {"MAX_LR", "OPTIMIZER"}


@pytest.mark.parametrize(
    ("text", "tuned", "changed"),
    [
        ("optimizer: {choices: [adam, sgd]}\n", {*DEFAULT_SPACE, "optimizer"}, "optimizer"),
        ("max_lr: {low: 0.002, high: 0.05, log: true}\n", set(DEFAULT_SPACE), "max_lr"),
        ("replace: false\nepochs: {low: 2, high: 6}\n", {*DEFAULT_SPACE, "epochs"}, "epochs"),
        ("batch_size: null\n", set(DEFAULT_SPACE) - {"batch_size"}, None),
    ],
    ids=["adds", "overrides", "replace-false-adds", "null-drops"],
)
def test_a_space_file_extends_the_default(
    tmp_path, text: str, tuned: set[str], changed: str | None
) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = load_space(path)
    assert set(space.distributions) == tuned
    default = default_space().distributions
    for name, dist in space.distributions.items():
        assert (dist == default.get(name)) == (name != changed)


@pytest.mark.parametrize(
    ("name", "spec", "kind"),
    [
        (
            "max_lr",
            {"low": 1e-3, "high": 1e-1, "log": True},
            optuna.distributions.FloatDistribution,
        ),
        (
            "grad_clip",
            {"low": 0.0, "high": 0.3, "step": 0.1},
            optuna.distributions.FloatDistribution,
        ),
        ("epochs", {"low": 2, "high": 8, "step": 2}, optuna.distributions.IntDistribution),
        ("model_width", {"low": 0.25, "high": 1.0}, optuna.distributions.FloatDistribution),
        (
            "batch_size",
            {"low": 128, "high": 512, "log": True},
            optuna.distributions.IntDistribution,
        ),
        ("epochs", {"low": 2, "high": 6, "type": "float"}, optuna.distributions.FloatDistribution),
        ("optimizer", {"choices": ["adam", "sgd"]}, optuna.distributions.CategoricalDistribution),
    ],
    ids=["log", "float-step", "int-step", "float", "int-log", "type", "choices"],
)
def test_each_kind_of_range_round_trips_through_the_file_format(
    name: str, spec: dict, kind: type
) -> None:
    space = build_space({name: spec})
    assert isinstance(space.distributions[name], kind)
    assert build_space(space.as_spec()) == space


def test_a_parameter_is_described_in_the_files_format() -> None:
    dist = default_space().distributions["max_lr"]
    assert describe("max_lr", dist) == "max_lr: {low: 0.001, high: 0.1, log: true}"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"momentum": 0.9}, "sets 'momentum', which the search space does not tune"),
        ({"max_lr": 0.5}, "sets max_lr=0.5, outside the space's max_lr: {low: 0.001"),
        ({"batch_size": 300}, "sets batch_size=300, outside the space's batch_size"),
        ({"max_lr": "fast"}, "sets max_lr='fast', outside"),
    ],
)
def test_a_configuration_outside_the_space_is_refused(params: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=re.escape(message)):
        default_space().check(params, "configuration 1")


def test_a_configuration_inside_the_space_is_accepted() -> None:
    default_space().check({"max_lr": 0.02, "batch_size": 256}, "configuration 1")


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
        ({"max_lr": {"low": 0.1, "high": 1, "log": True, "step": 0.1}}, "both log and step"),
        ({"max_lr": {"low": 0.1, "high": 1, "step": 0}}, "step 0; it must be above 0"),
        ({"epochs": {"low": 1.5, "high": 4}}, "is an int, so low, high and step are whole"),
        ({"optimizer": {"choices": ["adam"], "low": 0}}, "has choices, so it takes no"),
        ({"max_lr": {"low": 0.1, "high": 1, "type": "str"}}, "type 'str'; use int or float"),
    ],
)
def test_invalid_space_is_rejected_with_a_sentence(raw: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        build_space(raw)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_lr: [1, 2", "not valid YAML"),
        ("[]", "must map parameter"),
        ("replace: yes please\nmax_lr: {low: 0.1, high: 1}\n", "replace must be true or false"),
        ("replace: true\n", "leaves no parameter to tune"),
    ],
)
def test_invalid_space_file_is_rejected(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        load_space(path)
