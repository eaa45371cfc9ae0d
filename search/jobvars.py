"""The job's environment variables, as the job contract (DESIGN.md) names them.

The driver never imports the job, so it keeps this list; a test checks it against
``python -m job --variables``.
"""

from __future__ import annotations

JOB_VARIABLES: frozenset[str] = frozenset(
    {
        "DATA_URL",
        "DATA_SHA256",
        "DATA_DIR",
        "OUTPUT_DIR",
        "EPOCHS",
        "BATCH_SIZE",
        "MAX_LR",
        "WEIGHT_DECAY",
        "GRAD_CLIP",
        "OPTIMIZER",
        "SEED",
        "DEVICE",
        "PRECISION",
        "COMPILE",
        "MODEL_WIDTH",
        "TRAIN_LIMIT",
        "TEST_LIMIT",
        "PROMOTE_DIR",
    }
)
SET_BY_SEARCH: frozenset[str] = frozenset({"OUTPUT_DIR"})
"""Variables the search sets per trial; ``--job-env`` may not."""


class JobEnvError(ValueError):
    """A malformed or unknown ``--job-env`` setting; the message is one sentence."""


def parse_job_env(items: list[str] | tuple[str, ...], tuned: set[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` items into job variables, rejecting what the job would not take."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise JobEnvError(f"--job-env {item!r} is not KEY=VALUE.")
        if key not in JOB_VARIABLES:
            raise JobEnvError(
                f"--job-env {key} is not a job variable; known: {', '.join(sorted(JOB_VARIABLES))}."
            )
        if key in SET_BY_SEARCH:
            raise JobEnvError(f"--job-env {key} is set per trial by the search; use --output.")
        if key in tuned:
            raise JobEnvError(
                f"--job-env {key} is tuned by the search space; drop it from one of them."
            )
        env[key] = value
    return env
