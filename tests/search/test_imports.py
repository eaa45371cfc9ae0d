"""The search stays light: it never loads torch or the job (beyond job.contract), and its
``--help`` loads neither Optuna nor pandas."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.search.helpers import clean_env

SEARCH_MODULES = (
    "search",
    "search.__main__",
    "search.driver",
    "search.trial",
    "search.study",
    "search.study.confirmation",
    "search.study.create",
    "search.study.fresh",
    "search.study.lifecycle",
    "search.study.record",
    "search.study.reuse",
    "search.study.runs",
    "search.confirm",
    "search.confirm_legacy",
    "search.owner",
    "search.tpe",
    "search.storage",
    "search.storage.create",
    "search.storage.errors",
    "search.storage.forward",
    "search.storage.requeue",
    "search.storage.retrying",
    "search.storage.tokens",
    "search.storage.urls",
    "search.console",
    "search.events",
    "search.progress",
    "search.options",
    "search.settings",
    "search.exits",
    "search.errors",
    "search._optuna",
    "search.report",
    "search.space",
    "search.jobvars",
    "search.launchers",
    "search.launchers.cores",
    "search.launchers.local",
    "search.launchers.docker",
    "search.launchers.kubernetes",
    "search.launchers.k8s_manifest",
    "search.launchers.k8s_runtime",
)

JOB_MODULES_ALLOWED = {
    "job",
    "job.contract",
    "job.event_types",
    "job.parsers",
    "job.files",
    "job.threads",
}
"""The standard-library-only modules of the job that the search may import."""


def _modules_after(code: str) -> set[str]:
    """The names in sys.modules after a fresh interpreter ran ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_search_modules_load_no_torch_and_no_job_module_but_the_contract() -> None:
    loaded = _modules_after("".join(f"import {name}\n" for name in SEARCH_MODULES))
    assert "torch" not in loaded
    assert {m for m in loaded if m == "job" or m.startswith("job.")} <= JOB_MODULES_ALLOWED


HELP = """
import runpy, sys
sys.argv = ["search", *{args!r}]
try:
    runpy.run_module("search", run_name="__main__")
except SystemExit:
    pass
"""


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["best", "--help"]])
@pytest.mark.parametrize("heavy", ["optuna", "pandas", "matplotlib"])
def test_help_loads_no_heavy_library(args: list[str], heavy: str) -> None:
    assert heavy not in _modules_after(HELP.format(args=args))
