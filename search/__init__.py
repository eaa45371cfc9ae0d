"""Optuna search over the job's hyperparameters; trials run the job through a launcher.

Importing ``search`` loads nothing heavy: each name below is imported from its module on
first use (module ``__getattr__``), so ``python -m search --help`` starts without Optuna,
pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Driver": "search.driver",
    "Settings": "search.settings",
    "StudyStopped": "search.errors",
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

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
