"""search.options and search.settings: each option declared once, its default shown by
``--help``; the rules that turn the ``run`` options into a driver's settings."""

from __future__ import annotations

import enum
import re
import sys
from functools import cache
from pathlib import Path

import click
import pytest

from search.__main__ import cli
from search.options import COMMANDS, default, given
from search.settings import (
    Settings,
    SettingsError,
    build_settings,
    existing_storage_url,
    parse_gpus,
    slots,
    storage_url,
)
from tests.search.helpers import run_search


def _has_default(param: click.Parameter) -> bool:
    """Whether the option has a default (click 8.3+ marks "none" with an enum sentinel)."""
    flag = isinstance(param, click.Option) and param.is_flag
    return not flag and param.default is not None and not isinstance(param.default, enum.Enum)


DEFAULTED = [
    (name, param.opts[0], param.name)
    for name, command in cli.commands.items()
    for param in command.params
    if _has_default(param)
]
"""(command, option, its settings field) for every option of every command with a default."""


@cache
def _help(command: str) -> dict[str, str]:
    """``python -m search COMMAND --help``: each option's entry, whitespace removed (the help
    wraps lines, even inside a value), by the option's first flag."""
    proc = run_search([sys.executable, "-m", "search", command, "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    entries: dict[str, str] = {}
    flag = ""
    for line in out.splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = ""
        elif not line.startswith("   "):
            flag = ""
        if flag:
            entries[flag] += "".join(line.split())
    return entries


def test_every_command_sharing_options_is_covered() -> None:
    assert {command for command, _, _ in DEFAULTED} == {"run", "best", "report", "dashboard"}
    assert ("dashboard", "--storage-retry", "storage_retry") in DEFAULTED


def _shown(command: str, field: str) -> object:
    """The default ``--help`` shows for ``command``'s option ``field``."""
    option = next(o for o in COMMANDS[command] if o.name == field)
    return option.shown if isinstance(option.shown, str) else option.value()


@pytest.mark.parametrize(("command", "option", "field"), DEFAULTED)
def test_help_shows_the_options_default(command: str, option: str, field: str) -> None:
    value = re.escape("".join(str(_shown(command, field)).split()))
    # [default: 10], [default: 10; x>=1], or for a default read at run time [default: (…)]
    assert re.search(rf"\[default:(\({value}\)|{value})[;\]]", _help(command)[option])


def _settings() -> Settings:
    return Settings(trials=1, output=Path(), storage="", study_name="", space=None, launcher=None)


@pytest.mark.parametrize(
    "field", ["heartbeat", "retries", "storage_retry", "trial_timeout", "pruner", "confirm"]
)
def test_settings_take_their_defaults_from_the_options(field: str) -> None:
    assert getattr(_settings(), field) == default("run", field)


def test_every_command_takes_the_options_declared_for_it() -> None:
    for name, command in cli.commands.items():
        assert [p.name for p in command.params] == [o.name for o in COMMANDS[name]]
    with pytest.raises(TypeError, match="run has no option nope"):
        given("run", {"nope": 1})


def test_the_data_folder_defaults_to_the_jobs_data_dir() -> None:
    from job.contract import default as job_default

    assert str(_settings().data_dir) == job_default("DATA_DIR")


@pytest.mark.parametrize(
    ("launcher", "gpus", "per_gpu", "parallel", "slots"),
    [
        ("local", ["0", "1"], 2, None, 4),
        ("docker", ["3"], 3, None, 3),
        ("local", ["0", "1"], 2, 3, 3),
        ("local", [], 1, 4, 4),
        ("kubernetes", ["0", "1"], 1, 8, 8),  # the cluster places them, not the driver
    ],
)
def test_parallel_defaults_to_gpus_times_trials_per_gpu(
    launcher: str, gpus: list[str], per_gpu: int, parallel: int | None, slots: int
) -> None:
    from search.settings import slots as _slots

    assert _slots(launcher, gpus, per_gpu, parallel, None) == slots


@pytest.mark.parametrize(
    ("launcher", "cpus", "slots"),
    [
        ("local", 1, 1),
        ("local", 2, 2),
        ("docker", 2, 2),
        ("local", 64, 2),
        ("kubernetes", 64, 1),  # each trial pod has its own CPUs: one unless --parallel says
    ],
)
def test_a_cpu_only_search_runs_cpu_parallel_trials_where_the_cores_allow(
    launcher: str, cpus: int, slots: int
) -> None:
    from search.settings import slots as _slots

    assert _slots(launcher, [], 1, None, None, cpus=cpus) == slots


@pytest.mark.parametrize(
    ("launcher", "gpus", "per_gpu", "parallel", "resource", "message"),
    [
        ("local", [], 2, None, None, "needs GPUs"),
        ("docker", ["0"], 1, 2, None, "exceeds 1 GPU(s) x --trials-per-gpu 1 = 1 slots"),
        ("docker", [], 1, None, "nvidia.com/gpu", "applies to --launcher kubernetes only"),
    ],
)
def test_slots_refuse_what_cannot_be_honoured(
    launcher: str,
    gpus: list[str],
    per_gpu: int,
    parallel: int | None,
    resource: str | None,
    message: str,
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        slots(launcher, gpus, per_gpu, parallel, resource)


@pytest.mark.parametrize(
    ("option", "ids"),
    [(None, ["7"]), ("none", []), ("", []), (" NONE ", []), ("0, 2,", ["0", "2"])],
)
def test_gpus_are_parsed_or_detected(option: str | None, ids: list[str]) -> None:
    assert parse_gpus(option, lambda: ["7"]) == ids


@pytest.mark.parametrize("option", ["a", "0,x", "-1"])
def test_gpus_that_are_not_ids_are_refused(option: str) -> None:
    with pytest.raises(SettingsError, match="not a comma-separated list of GPU ids"):
        parse_gpus(option, lambda: [])


def test_the_storage_defaults_to_sqlite_in_the_output(tmp_path: Path) -> None:
    assert storage_url(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'study.db'}"
    assert storage_url("postgresql://h/d", tmp_path) == "postgresql://h/d"


def test_reading_a_missing_sqlite_study_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"no study database at .*; run `search run` first"):
        existing_storage_url(None, tmp_path)
    (tmp_path / "study.db").touch()
    assert existing_storage_url(None, tmp_path).endswith("study.db")


def test_run_options_become_the_drivers_settings(tmp_path: Path) -> None:
    options = {
        "trials": 3,
        "launcher": "local",
        "output": tmp_path / "out",
        "gpus": "none",
        "job_env": ("EPOCHS=2", f"DATA_DIR={tmp_path / 'cache'}"),
    }
    said: list[str] = []
    settings = build_settings(options, said.append)
    assert settings.launcher.name == "local"
    from search.settings import cpu_slots

    assert settings.parallel == cpu_slots() and list(settings.gpus) == []
    assert settings.job_env == {"EPOCHS": "2"}
    assert settings.data_dir == (tmp_path / "cache").resolve()
    assert settings.storage == storage_url(None, tmp_path / "out")
    assert (settings.heartbeat, settings.retries) == (default("run", "heartbeat"), 2)
    assert said == []  # only `auto` says which launcher it chose


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: ConfigMap\n", "holds no kind: Job document"),
        ("kind: [Job\n", "cannot read the Job template"),
    ],
)
def test_a_job_template_without_a_job_is_refused(tmp_path: Path, text: str, message: str) -> None:
    template = tmp_path / "job.yaml"
    template.write_text(text)
    options = {"launcher": "kubernetes", "gpus": "none", "job_template": template}
    with pytest.raises(SettingsError, match=message):
        build_settings(options, print)
