"""Optuna search over the job's hyperparameters; trials run the job through a launcher."""

from search.driver import Driver, Settings, StudyStopped, open_study, parse_event
from search.launchers import detect_gpus, docker_ready, make_launcher
from search.report import configmap, trials_frame, write_best, write_report
from search.space import Space, SpaceError, build_space, default_space, load_space, to_env

__all__ = [
    "Driver",
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
    "make_launcher",
    "open_study",
    "parse_event",
    "to_env",
    "trials_frame",
    "write_best",
    "write_report",
]
