"""Counting a study's trials by state in one statement, instead of loading every trial.

The driver decides whether to ask for another trial from the study's finished and running
totals, before every trial and every few seconds while it waits for the budget. Optuna's
``get_n_trials`` loads all of the study's trials to count them; a ``GROUP BY`` on the trials
table answers in one round trip whatever the study's size, and it is exact (it reads the
database, not a cache), as the budget needs.
"""

from __future__ import annotations

import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from search._optuna import rdb_models


def state_counts(backend: RDBStorage, study_id: int) -> dict[TrialState, int]:
    """How many trials of the study ``study_id`` are in each state (absent: none); KeyError
    when there is no such study."""
    trials = rdb_models().TrialModel.__table__
    studies = rdb_models().StudyModel.__table__
    query = (
        sqlalchemy.select(trials.c.state, sqlalchemy.func.count())
        .where(trials.c.study_id == study_id)
        .group_by(trials.c.state)
    )
    with backend.engine.connect() as connection:
        counts = {TrialState(state): int(n) for state, n in connection.execute(query).all()}
        if not counts:
            known = sqlalchemy.select(studies.c.study_id).where(studies.c.study_id == study_id)
            if connection.execute(known).first() is None:
                raise KeyError(f"no study with study_id {study_id}")
    return counts
