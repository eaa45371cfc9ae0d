"""Optuna search over the job's hyperparameters; trials run the job through a launcher.

Importing ``search`` loads nothing heavy: each name below is imported from its module on
first use (module ``__getattr__``), so ``python -m search --help`` starts without Optuna,
pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from search.driver import Driver
    from search.errors import StudyStopped
    from search.events import parse_event
    from search.launchers import detect_gpus, docker_ready, make_launcher
    from search.report import configmap, trials_frame, write_best, write_report
    from search.settings import Settings
    from search.space import Space, SpaceError, build_space, default_space, load_space, to_env
    from search.study import OpenedStudy, load_study, open_study

_EXPORTS: dict[str, str] = {
    "Driver": "search.driver",
    "Settings": "search.settings",
    "StudyStopped": "search.errors",
    "OpenedStudy": "search.study",
    "open_study": "search.study",
    "load_study": "search.study",
    "parse_event": "search.events",
    "detect_gpus": "search.launchers",
    "docker_ready": "search.launchers",
    "make_launcher": "search.launchers",
    "configmap": "search.report",
    "trials_frame": "search.report",
    "write_best": "search.report",
    "write_report": "search.report",
    "Space": "search.space",
    "SpaceError": "search.space",
    "build_space": "search.space",
    "default_space": "search.space",
    "load_space": "search.space",
    "to_env": "search.space",
}
"""Public name → the module that defines it."""

__all__ = [
    "Driver",
    "OpenedStudy",
    "Settings",
    "Space",
    "SpaceError",
    "StudyStopped",
    "build_space",
    "configmap",
    "default_space",
    "detect_gpus",
    "docker_ready",
    "load_space",
    "load_study",
    "make_launcher",
    "open_study",
    "parse_event",
    "to_env",
    "trials_frame",
    "write_best",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
