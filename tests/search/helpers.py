"""Helpers for the search tests: run ``python -m search`` for real, read its study back."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from search.driver import Driver
from search.launchers.local import LocalLauncher
from search.settings import Settings
from search.space import build_space
from search.study import load_study, open_study
from testkit import REPO, jobrun
from testkit import job as standin
from tests.conftest import need

SMALL_JOB = {
    "DEVICE": "cpu",
    "MODEL_WIDTH": "0.125",
    "TRAIN_LIMIT": "200",
    "TEST_LIMIT": "100",
}
"""Job settings small enough for a CPU trial in a few seconds."""


def spawn(argv: Sequence[str]) -> subprocess.Popen[str]:
    """Start ``argv`` from the repository in :func:`clean_env`, its stdout and stderr piped."""
    return subprocess.Popen(
        list(argv),
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_together(script: str, *args: str, count: int = 4) -> list[tuple[int, str]]:
    """Run ``python -c script *args`` ``count`` times at once from the repository; each
    process's exit code and stderr (the script waits for a start time it is given, so that
    they act together)."""
    procs = [spawn([sys.executable, "-c", script, *args]) for _ in range(count)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errors, strict=True)]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment minus job variables and the search's ``TRIALS``, plus
    ``extra``."""
    mine = {k: v for k, v in os.environ.items() if k != "TRIALS"}
    return jobrun.clean_env(mine, PYTHONUNBUFFERED=1, **extra)


def search_args(
    output: Path,
    archive: Path,
    *,
    trials: int,
    parallel: int = 1,
    epochs: int = 2,
    job: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``python -m search run`` arguments for a small local study on a generated archive."""
    settings = {
        **SMALL_JOB,
        "EPOCHS": str(epochs),
        "DATA_URL": archive.resolve().as_uri(),
        "DATA_DIR": str(output.parent / "data"),
        **(job or {}),
    }
    args = [
        sys.executable,
        "-m",
        "search",
        "run",
        "--trials",
        str(trials),
        "--parallel",
        str(parallel),
        "--launcher",
        "local",
        "--gpus",
        "none",
        "--output",
        str(output),
        "--seed",
        "0",
        "--heartbeat",
        "2",
        "--confirm",
        "0",
    ]
    for key, value in settings.items():
        args += ["--job-env", f"{key}={value}"]
    return args + list(extra)


def run_search(args: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the search CLI to its end; return the completed process."""
    return subprocess.run(
        list(args), cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )


def search_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m search ARGS`` to its end (a command that returns within 2 minutes)."""
    return run_search([sys.executable, "-m", "search", *args], timeout=120)


def load(output: Path, study: str = "resnet-job", storage: str | None = None) -> optuna.Study:
    """Load the study a search run left in ``output`` (or in ``storage``); KeyError when it
    does not exist yet. It opens the storage as the drivers do (search.study), so a test
    polling an empty database never races them to create the schema."""
    url = storage or f"sqlite:///{output / 'study.db'}"
    return load_study(url, study, retry_seconds=60)


def states(study: optuna.Study) -> list[str]:
    """The state names of the study's trials, in trial order."""
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def stub_settings(tmp_path: Path, plan: str, trials: int = 2, **overrides: object) -> Settings:
    """The settings of a study whose trials run the stand-in job (:mod:`testkit.job`) with
    ``plan``, on SQLite in ``tmp_path``; trials write to ``tmp_path/out/trials/<n>``."""
    settings: dict[str, Any] = {
        "trials": trials,
        "output": tmp_path / "out",
        "storage": f"sqlite:///{tmp_path / 'study.db'}",
        "study_name": "t",
        "space": build_space({"max_lr": {"low": 1e-3, "high": 1e-1, "log": True}}),
        "launcher": LocalLauncher([sys.executable, str(standin.PATH), plan]),
        "data_dir": tmp_path / "data",
        "seed": 0,
        "stop_grace": 5,
        "confirm": 0,
    }
    return Settings(**{**settings, **overrides})


def stub_driver(tmp_path: Path, plan: str, trials: int = 2, **overrides: object) -> Driver:
    """A driver of the study of :func:`stub_settings`, opened as ``search run`` opens it."""
    settings = stub_settings(tmp_path, plan, trials, **overrides)
    return Driver(settings, open_study(settings, print))


def empty_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database, for a fixture to ``yield from``: ``sqlite`` (a file
    in ``folder``) or ``postgresql`` (created on the shared server of
    RESNET_JOB_POSTGRES_URL, dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'study.db'}"
        return
    import psycopg2

    base = os.environ.get("RESNET_JOB_POSTGRES_URL")
    need(bool(base), "RESNET_JOB_POSTGRES_URL is not set (start one with .ci/postgres.sh)")
    assert base is not None
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base.replace("postgresql+psycopg2://", "postgresql://"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield base.rsplit("/", 1)[0] + f"/{name}"
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
