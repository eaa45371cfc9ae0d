"""What names a confirmation run: the trial it confirms and its seed, as parameters.

Each run's parameters are its configuration's plus ``confirms`` and ``seed`` (also set as
user attributes), so a run queued again after its driver died still says what it is. Shared
by the plan (:mod:`search.study.confirmation`) and the reuse of baseline runs
(:mod:`search.study.reuse`).
"""

from __future__ import annotations

from typing import Any

import optuna

CONFIRMS = "confirms"
SEED = "seed"
"""The parameters (and user attributes) naming what a confirmation run confirms, its seed."""

SUFFIX = ".confirm"
"""The sibling study's name is the study's plus this."""

NUMBER = optuna.distributions.IntDistribution(0, 2**31 - 1)
"""The distribution of ``confirms`` and ``seed``: any trial number or seed."""


def key(params: dict[str, Any]) -> tuple[Any, Any]:
    """A run's (confirmed trial, seed) from its parameters."""
    return params.get(CONFIRMS), params.get(SEED)
