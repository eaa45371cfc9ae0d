"""A study's lifecycle: opening it for a driver, reading it, and planning its confirmation.

- :func:`open_study` (:mod:`~search.study.lifecycle`): ``run`` opens or creates the study,
  keeps an old one aside with ``--fresh``, checks or records its settings
  (:mod:`~search.study.record`, :mod:`~search.study.fresh`) and queues the baseline and the
  ``--enqueue`` configurations, on one storage under one acquisition of the creation lock;
  the driver receives the :class:`OpenedStudy`.
- :func:`load_study` (:mod:`~search.study.create`): ``best`` and ``report`` read a study.
- :func:`plan` (:mod:`~search.study.confirmation`): after the budget, each round of the
  confirmation race, queued in the ``.confirm`` sibling under an acquisition of the lock of
  its own, reusing baseline runs other studies made (:mod:`~search.study.reuse`).

Every ``optuna.create_study`` of the search is :func:`search.study.create.create`.
"""

from __future__ import annotations

from search.study.confirmation import plan
from search.study.create import load_study
from search.study.lifecycle import FINISHED, OpenedStudy, open_study

__all__ = ["FINISHED", "OpenedStudy", "load_study", "open_study", "plan"]
