"""Every option of ``python -m search``, declared once: its flag, default, parser and help.

The CLI builds its click options from these declarations (:meth:`Option.decorate`), and
:mod:`search.settings` reads what a command was not given from them (:func:`given`), so a
default, a range or a help text is written in one place. Each command's options are listed
in the order its ``--help`` shows them (:data:`COMMANDS`).

Standard library and click only: ``--help`` stays quick.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

LAUNCHERS = ("auto", "local", "docker", "kubernetes")
PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")

IMAGE = "resnet-job:latest"
"""The container image of docker and kubernetes trials unless RESNET_JOB_IMAGE names another."""

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Option:
    """One option: ``default`` is the value a command receives when it is not given (a
    callable: read when the command runs), ``parser`` the click type that checks a given
    value, ``shown`` the default's text in ``--help`` when it is not the default itself."""

    flag: str
    default: Any = None
    parser: Any = None
    help: str | None = None
    metavar: str | None = None
    envvar: str | None = None
    shown: bool | str = True
    is_flag: bool = False
    multiple: bool = False

    @property
    def name(self) -> str:
        """The command's parameter (and the settings' field) it fills: ``--study-name`` →
        ``study_name``."""
        return self.flag.removeprefix("--").replace("-", "_")

    def value(self) -> Any:
        """What a command that was not given this option receives."""
        if callable(self.default):
            return self.default()
        if self.multiple:
            return ()
        return False if self.is_flag else self.default

    def decorate(self, command: _F) -> _F:
        """``command`` with this option as a click option."""
        kwargs: dict[str, Any] = {"is_flag": True} if self.is_flag else {}
        if self.multiple:
            kwargs["multiple"] = True
        if self.default is not None and not self.is_flag:
            kwargs.update(default=self.default, show_default=self.shown)
        extra = {"type": self.parser, "help": self.help, "metavar": self.metavar}
        kwargs.update({k: v for k, v in {**extra, "envvar": self.envvar}.items() if v})
        return click.option(self.flag, **kwargs)(command)


def _image() -> str:
    return os.environ.get("RESNET_JOB_IMAGE", IMAGE)


_SHARED = (
    Option(
        "--storage",
        envvar="SEARCH_STORAGE",
        help="Optuna storage URL (default: sqlite in --output); postgresql://… for several "
        "drivers. Prefer the SEARCH_STORAGE variable for a URL with a password.",
    ),
    Option("--study-name", "resnet-job"),
    Option(
        "--output",
        Path("output/search"),
        click.Path(path_type=Path, file_okay=False),
        "Folder for the study database (SQLite default), trials and results.",
    ),
    Option(
        "--storage-retry",
        300.0,
        click.FloatRange(min=0),
        "Ride out an unreachable database this long, retrying with backoff; then stop the "
        "running trials (a rerun resumes them) and exit 6.",
        metavar="SECONDS",
    ),
)
"""The options every command that opens the study shares (storage, study, output, retry)."""

_STORAGE, _STUDY, _OUTPUT, _RETRY = _SHARED

_RUN = (
    Option(
        "--trials",
        20,
        click.IntRange(min=1),
        "Finished trials the study should hold in total.",
        envvar="TRIALS",
    ),
    Option(
        "--parallel",
        parser=click.IntRange(min=1),
        help="Trials at once (default: GPUs x --trials-per-gpu; without GPUs 2 for local and "
        "docker on 2+ cores, else 1).",
    ),
    Option("--launcher", "auto", click.Choice(LAUNCHERS)),
    *_SHARED,
    Option("--pruner", "median", click.Choice(PRUNERS)),
    Option("--sampler", "tpe", click.Choice(SAMPLERS)),
    Option("--seed", parser=int, help="Sampler seed."),
    Option(
        "--space",
        parser=click.Path(path_type=Path, dir_okay=False),
        help="YAML/JSON search space: adds or overrides parameters of the default space "
        "(name: null drops one); with the top-level key replace: true it replaces it whole.",
    ),
    Option(
        "--trial-timeout",
        1800,
        click.FloatRange(min=1),
        "Stop and fail a trial that emits no event for this many seconds.",
    ),
    Option(
        "--gpus",
        help="GPU ids to use in nvidia-smi's numbering, e.g. 0,1,2, or 'none' (default: all "
        "detected, within CUDA_VISIBLE_DEVICES).",
    ),
    Option(
        "--trials-per-gpu",
        1,
        click.IntRange(min=1),
        "Trials sharing each GPU at once (local and docker; on Kubernetes it needs a "
        "shared --gpu-resource).",
        metavar="K",
    ),
    Option(
        "--gpu-resource",
        metavar="NAME",
        help="Kubernetes resource each trial requests (default nvidia.com/gpu), e.g. a MIG or "
        "time-sliced resource name.",
    ),
    Option(
        "--job-env",
        multiple=True,
        metavar="KEY=VALUE",
        help="A fixed job variable for every trial (repeatable), e.g. EPOCHS=4.",
    ),
    Option("--image", _image, help="Container image (docker, kubernetes).", shown=IMAGE),
    # The namespace of the project's Kubernetes stack (k8s/kustomization.yaml).
    Option("--namespace", "resnet-job", help="Kubernetes namespace."),
    Option(
        "--job-template",
        parser=click.Path(path_type=Path, dir_okay=False),
        help="Kubernetes Job manifest to build trial Jobs from (default: built in).",
    ),
    Option(
        "--retries",
        2,
        click.IntRange(min=0),
        "Relaunches of a preempted (exit 143 or vanished) run.",
    ),
    Option(
        "--heartbeat",
        10,
        click.IntRange(min=1),
        "Seconds between trial heartbeats; a trial silent 3x this long is stale.",
    ),
    Option(
        "--confirm",
        1,
        click.IntRange(min=0),
        "After the budget, race the top K configurations and the baseline over fresh seeds "
        "in rounds, dropping those clearly behind, and export the winner; 0 = off.",
        metavar="K",
    ),
    Option(
        "--confirm-seeds",
        5,
        click.IntRange(min=1),
        "Fresh seeds at most, one per round: the study's SEED + 1 ... + S.",
        metavar="S",
    ),
    Option(
        "--timeout",
        parser=click.FloatRange(min=1),
        metavar="SECONDS",
        help="Start no new trial after this many seconds of this run; running trials finish, "
        "the results are written and the run exits 0 (Optuna's timeout); rerun to continue. "
        "Default: no limit.",
    ),
    Option(
        "--cold-start",
        is_flag=True,
        help="Start every local trial as a new Python process instead of forking it from a "
        "warm one that has already imported PyTorch.",
    ),
    Option(
        "--enqueue",
        parser=click.Path(path_type=Path, dir_okay=False),
        help="YAML/JSON list of known configurations to run first (after the baseline), "
        "each a mapping of parameter names to values inside the space; queued once.",
    ),
    Option(
        "--fresh",
        is_flag=True,
        help="Keep the study (and its files in --output) under <name>-<UTC time> and start a "
        "new, empty study under this name.",
    ),
)

COMMANDS: dict[str, tuple[Option, ...]] = {
    "run": _RUN,
    "best": (
        *_SHARED,
        Option(
            "--configmap",
            metavar="NAME",
            help="Also write <output>/configmap.yaml: a ConfigMap NAME of the exported "
            "parameters and a PROMOTE_MARGIN from the confirmation's pooled noise.",
        ),
    ),
    "report": _SHARED,
    "dashboard": (
        _STORAGE,
        _OUTPUT,
        _RETRY,
        Option("--port", 8080, click.IntRange(1, 65535)),
        Option("--host", "127.0.0.1"),
    ),
}
"""Each command's options, in the order of its ``--help``."""


def options(command: str) -> Callable[[_F], _F]:
    """A decorator giving ``command``'s function its click options."""

    def decorate(function: _F) -> _F:
        for option in reversed(COMMANDS[command]):  # click lists the last one applied first
            function = option.decorate(function)
        return function

    return decorate


def given(command: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``command`` by name: ``values`` where given, else the default (a
    program or a test can name only the options it sets)."""
    declared = {option.name: option for option in COMMANDS[command]}
    unknown = set(values) - set(declared)
    if unknown:
        raise TypeError(f"{command} has no option {', '.join(sorted(unknown))}")
    return {name: values[name] if name in values else o.value() for name, o in declared.items()}


def default(command: str, name: str) -> Any:
    """The value ``command`` receives for option ``name`` when it is not given."""
    return next(option for option in COMMANDS[command] if option.name == name).value()
