"""Checking ``--job-env KEY=VALUE`` settings against the job's contract.

The job's variables, and those the search sets per trial itself, come from
:mod:`job.contract` (``docs/contract.md``: environment).
"""

from __future__ import annotations

from collections.abc import Iterable

from job.contract import SET_PER_TRIAL, VARIABLE_NAMES


class JobEnvError(ValueError):
    """A malformed or unknown ``--job-env`` setting; the message is one sentence."""


def parse_job_env(items: Iterable[str], tuned: set[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` items into job variables, rejecting what the job would not take."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise JobEnvError(f"--job-env {item!r} is not KEY=VALUE.")
        if key not in VARIABLE_NAMES:
            known = ", ".join(sorted(VARIABLE_NAMES))
            raise JobEnvError(f"--job-env {key} is not a job variable; known: {known}.")
        if key in SET_PER_TRIAL:
            raise JobEnvError(f"--job-env {key} is set per trial by the search; use --output.")
        if key in tuned:
            raise JobEnvError(
                f"--job-env {key} is tuned by the search space; drop it from one of them."
            )
        env[key] = value
    return env
