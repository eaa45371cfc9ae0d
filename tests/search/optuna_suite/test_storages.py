"""Optuna's own ``test_storages.py``, run against the project's storage (see conftest.py)."""

from tests.search.optuna_suite.conftest import load

globals().update(load("test_storages.py"))
