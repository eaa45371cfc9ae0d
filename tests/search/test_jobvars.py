"""The contract's list of job variables is the job's own, and --job-env is checked against it."""

from __future__ import annotations

import json

import pytest

from job.contract import VARIABLE_NAMES
from search.jobvars import JobEnvError, parse_job_env
from tests.conftest import run_job


def test_job_variables_match_python_m_job_variables() -> None:
    result = run_job(None, "--variables", timeout=120, strict=False)
    assert result.code == 0, result.stderr
    assert set(json.loads(result.stdout)) == VARIABLE_NAMES


def test_parse_job_env_keeps_values_verbatim() -> None:
    env = parse_job_env(["EPOCHS=4", "DATA_URL=file:///a=b.tgz"], tuned=set())
    assert env == {"EPOCHS": "4", "DATA_URL": "file:///a=b.tgz"}


@pytest.mark.parametrize(
    ("item", "tuned", "message"),
    [
        ("EPOCHS", set(), "not KEY=VALUE"),
        ("epochs=4", set(), "not a job variable"),
        ("OUTPUT_DIR=x", set(), "set per trial"),
        ("MAX_LR=0.1", {"MAX_LR"}, "tuned by the search space"),
    ],
)
def test_parse_job_env_rejects(item: str, tuned: set[str], message: str) -> None:
    with pytest.raises(JobEnvError, match=message):
        parse_job_env([item], tuned)
