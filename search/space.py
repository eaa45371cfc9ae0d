"""The search space: which job parameters Optuna tunes, and over what ranges.

A space maps a parameter name (lower-case job variable, e.g. ``max_lr`` for ``MAX_LR``) to a
distribution. The default space centres on the tutorial's recipe; a YAML or JSON file
extends it (adds or overrides parameters; ``name: null`` drops one), or replaces it whole
with the top-level key ``replace: true``. Parameters absent from the space are not tuned:
the job uses its default or the value given with ``--job-env``.

``--enqueue FILE`` names known configurations to run first: a list of mappings of parameter
names to values, each checked against the space when the options are read
(:func:`load_configurations`); the study queues them once (:mod:`search.study`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from job.contract import TUNABLE, TUNED, default
from search._optuna import contains


def _number(text: str) -> int | float:
    return int(text) if text.isdigit() else float(text)


TUTORIAL_DEFAULTS: dict[str, Any] = {name.lower(): _number(default(name)) for name in TUNED}
"""The tutorial's recipe (the job's defaults of the tuned variables), enqueued as every
study's first trial: ``max_lr`` 0.01, ``weight_decay`` 1e-4, ``grad_clip`` 0.1,
``batch_size`` 400."""

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "max_lr": {"low": 1e-3, "high": 1e-1, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "grad_clip": {"low": 1e-2, "high": 1.0, "log": True},
    "batch_size": {"choices": [128, 256, 400, 512]},
}


REPLACE = "replace"
"""The top-level key of a space file that, when true, replaces the default space instead of
extending it."""


class SpaceError(ValueError):
    """A space definition that cannot be used; the message is one sentence for the user."""


@dataclass(frozen=True)
class Space:
    """Validated Optuna distributions keyed by parameter name."""

    distributions: dict[str, optuna.distributions.BaseDistribution]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for a value of every parameter in the space."""
        return {name: _suggest(trial, name, dist) for name, dist in self.distributions.items()}

    def baseline(self) -> dict[str, Any]:
        """The tutorial's defaults for the parameters in this space that admit them."""
        return {
            name: value
            for name, value in TUTORIAL_DEFAULTS.items()
            if name in self.distributions and _admits(self.distributions[name], value)
        }

    def job_vars(self) -> set[str]:
        """Job variables this space sets (so ``--job-env`` must not)."""
        return {TUNABLE[name] for name in self.distributions}

    def as_spec(self) -> dict[str, dict[str, Any]]:
        """The space in the space file's format (``build_space(space.as_spec())`` is equal)."""
        return {name: _spec(name, dist) for name, dist in self.distributions.items()}

    def check(self, params: Mapping[str, Any], where: str) -> None:
        """Refuse ``params`` (a configuration, named ``where`` in the sentence) unless each
        is a parameter of this space with a value it admits."""
        for name, value in params.items():
            dist = self.distributions.get(name)
            if dist is None:
                known = ", ".join(sorted(self.distributions))
                raise SpaceError(
                    f"{where} sets {name!r}, which the search space does not tune; "
                    f"the space tunes {known}."
                )
            if not _contains(dist, value):
                raise SpaceError(
                    f"{where} sets {name}={value!r}, outside the space's {describe(name, dist)}."
                )


def describe(name: str, dist: optuna.distributions.BaseDistribution) -> str:
    """One parameter as a line of a space file: ``max_lr: {low: 0.001, high: 0.1, log: true}``."""
    spec = _spec(name, dist)
    parts = ", ".join(f"{key}: {_text(value)}" for key, value in spec.items())
    return f"{name}: {{{parts}}}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _kind(name: str) -> str:
    """The type of a range that does not say: int for counts, else float."""
    return "int" if name in ("batch_size", "epochs") else "float"


def _spec(name: str, dist: optuna.distributions.BaseDistribution) -> dict[str, Any]:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return {"choices": list(dist.choices)}
    assert isinstance(
        dist, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution
    )
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    spec: dict[str, Any] = {"low": dist.low, "high": dist.high}
    if kind != _kind(name):
        spec["type"] = kind
    if dist.log:
        spec["log"] = True
    if dist.step is not None and not (kind == "int" and dist.step == 1):
        spec["step"] = dist.step
    return spec


def _contains(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a value ``dist`` can suggest (a choice, or a number of the right
    kind inside the range and on its step)."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(dist, optuna.distributions.IntDistribution) and not float(value).is_integer():
        return False
    try:
        return contains(dist, dist.to_internal_repr(value))
    except (TypeError, ValueError):
        return False


def _suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, optuna.distributions.FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _admits(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    assert isinstance(
        dist, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution
    )
    return dist.low <= value <= dist.high


def to_env(params: Mapping[str, Any]) -> dict[str, str]:
    """Turn trial parameters into job variables (``{"max_lr": 0.01}`` → ``{"MAX_LR": "0.01"}``)."""
    return {TUNABLE[name]: _format(value) for name, value in params.items() if name in TUNABLE}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def default_space() -> Space:
    """The default space around the tutorial's values."""
    return build_space(DEFAULT_SPACE)


def load_space(path: Path) -> Space:
    """Read and validate a YAML or JSON space file: the default space with the file's
    parameters added or overridden (``name: null`` drops one), or the file's parameters alone
    when it sets ``replace: true``."""
    raw = read_file(path, "the space file")
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(f"the space file {path} must map parameter names to ranges.")
    return build_space(merge(raw, str(path)))


def read_file(path: Path, what: str) -> Any:
    """The YAML (or, for a ``.json`` name, JSON) document in ``path``; SpaceError naming
    ``what`` the file is when it cannot be read or parsed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"cannot read {what} {path}: {exc.strerror}.") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise SpaceError(f"{what} {path} is not valid YAML/JSON ({first}).") from None


def load_configurations(path: Path, space: Space) -> list[dict[str, Any]]:
    """The ``--enqueue`` file ``path``, every configuration in it checked against ``space``;
    SpaceError with one sentence for a file that cannot be read, is not a list of mappings,
    or names a parameter the space does not tune or a value outside its range."""
    raw = read_file(path, "the --enqueue file")
    if not isinstance(raw, list) or not raw:
        raise SpaceError(
            f"the --enqueue file {path} must be a list of configurations, each a mapping of "
            "parameter names to values."
        )
    configurations = []
    for number, item in enumerate(raw, start=1):
        where = f"configuration {number} of {path}"
        if not isinstance(item, Mapping) or not item:
            raise SpaceError(f"{where} is not a mapping of parameter names to values.")
        space.check(item, where)
        configurations.append(dict(item))
    return configurations


def merge(raw: Mapping[str, Any], where: str = "the space file") -> dict[str, Any]:
    """A space file's mapping applied to the default space: its parameters added or
    overridden, ``null`` ones dropped; with ``replace: true`` its parameters alone."""
    params = dict(raw)
    replace = params.pop(REPLACE, False)
    if not isinstance(replace, bool):
        raise SpaceError(f"{where}: {REPLACE} must be true or false, not {replace!r}.")
    merged: dict[str, Any] = {} if replace else dict(DEFAULT_SPACE)
    for name, spec in params.items():
        if spec is None:
            merged.pop(name, None)
        else:
            merged[name] = spec
    if not merged:
        raise SpaceError(f"{where} leaves no parameter to tune.")
    return merged


def build_space(raw: Mapping[str, Any]) -> Space:
    """Validate a space mapping: ``{name: {low, high, log?, step?, type?} | {choices: [...]}}``."""
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in raw.items():
        if name not in TUNABLE:
            known = ", ".join(sorted(TUNABLE))
            raise SpaceError(f"unknown parameter {name!r} in the space; known: {known}.")
        if not isinstance(spec, Mapping):
            raise SpaceError(f"parameter {name!r} needs a mapping with low/high or choices.")
        dists[name] = _distribution(name, spec)
    return Space(dists)


def _distribution(name: str, spec: Mapping[str, Any]) -> optuna.distributions.BaseDistribution:
    unknown = set(spec) - {"low", "high", "log", "step", "type", "choices"}
    if unknown:
        raise SpaceError(f"parameter {name!r} has unknown keys: {', '.join(sorted(unknown))}.")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"parameter {name!r} has an empty list of choices.")
        if set(spec) - {"choices"}:
            raise SpaceError(f"parameter {name!r} has choices, so it takes no low/high/step/log.")
        return optuna.distributions.CategoricalDistribution(choices)
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"parameter {name!r} needs both low and high (or choices).")
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (TypeError, ValueError):
        raise SpaceError(f"parameter {name!r} has a non-numeric low or high.") from None
    log = bool(spec.get("log", False))
    if not low < high:
        raise SpaceError(f"parameter {name!r} has an empty range: low {low:g} >= high {high:g}.")
    if log and low <= 0:
        raise SpaceError(f"parameter {name!r} is log-scaled, so low must be above 0.")
    kind = spec.get("type", _kind(name))
    if kind not in ("int", "float"):
        raise SpaceError(f"parameter {name!r} has type {kind!r}; use int or float.")
    try:
        step = None if spec.get("step") is None else float(spec["step"])
    except (TypeError, ValueError):
        raise SpaceError(f"parameter {name!r} has a non-numeric step.") from None
    if log and step is not None:
        raise SpaceError(f"parameter {name!r} has both log and step; Optuna takes one of them.")
    if step is not None and step <= 0:
        raise SpaceError(f"parameter {name!r} has step {step:g}; it must be above 0.")
    if kind == "int":
        if not all(v.is_integer() for v in (low, high, 1.0 if step is None else step)):
            raise SpaceError(f"parameter {name!r} is an int, so low, high and step are whole.")
        return optuna.distributions.IntDistribution(
            int(low), int(high), log=log, step=1 if step is None else int(step)
        )
    return optuna.distributions.FloatDistribution(low, high, log=log, step=step)
