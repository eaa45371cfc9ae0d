"""The search space: which job parameters Optuna tunes, and over what ranges.

A space maps a parameter name (lower-case job variable, e.g. ``max_lr`` for ``MAX_LR``) to a
distribution. The default space centres on the tutorial's recipe; a YAML or JSON file may
replace it. Parameters absent from the space are not tuned: the job uses its default or the
value given with ``--job-env``.
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
    """Read and validate a YAML or JSON space file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"cannot read the space file {path}: {exc.strerror}.") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise SpaceError(f"the space file {path} is not valid YAML/JSON ({first}).") from None
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(f"the space file {path} must map parameter names to ranges.")
    return build_space(raw)


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
    kind = spec.get("type", "int" if name in ("batch_size", "epochs") else "float")
    if kind not in ("int", "float"):
        raise SpaceError(f"parameter {name!r} has type {kind!r}; use int or float.")
    try:
        step = None if spec.get("step") is None else float(spec["step"])
    except (TypeError, ValueError):
        raise SpaceError(f"parameter {name!r} has a non-numeric step.") from None
    if kind == "int":
        return optuna.distributions.IntDistribution(
            int(low), int(high), log=log, step=1 if step is None else int(step)
        )
    return optuna.distributions.FloatDistribution(low, high, log=log, step=step)
