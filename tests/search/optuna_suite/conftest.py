"""Optuna's own storage tests (``tests/storages_tests/test_storages.py`` and
``test_heartbeat.py`` of the installed Optuna's source distribution, which ``make
optuna-suite`` fetches into ``.ci/cache/optuna-suite``) run against the project's storage on
SQLite and PostgreSQL: ``test_storages.py`` and ``test_heartbeat.py`` here take the tests
of their namesakes there.

Before the suite is imported, ``optuna.testing.storages`` is replaced by
:mod:`tests.search.optuna_suite.supplier`, so every test that takes a storage from Optuna's
supplier gets the project's. The tests that cannot apply to it are listed in
:data:`NOT_APPLICABLE`, each with its reason; every other test must pass.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO, need
from tests.search.optuna_suite import supplier

sys.modules["optuna.testing.storages"] = supplier

SUITE = REPO / ".ci" / "cache" / "optuna-suite" / "tests" / "storages_tests"
"""Where ``make optuna-suite`` puts Optuna's storage tests."""

_BUILDS_ITS_OWN = (
    "it builds a plain RDBStorage itself and sets that storage's attributes (it names no "
    "storage mode a supplier could provide), so it tests Optuna's RDBStorage, not the "
    "project's storage"
)

NOT_APPLICABLE: dict[str, str] = {
    "test_storages.py::test_get_storage": (
        "it checks what optuna.storages.get_storage makes of a URL, not a storage"
    ),
    "test_storages.py::test_get_trials_included_trial_ids": (
        "it calls RDBStorage._get_trials, a private method of Optuna's RDB storage that the "
        "storage interface (and so the project's storage) does not have"
    ),
    "test_storages.py::test_get_trials_trial_id_greater_than": (
        "it calls RDBStorage._get_trials, a private method of Optuna's RDB storage that the "
        "storage interface (and so the project's storage) does not have"
    ),
    "test_heartbeat.py::test_fail_stale_trials[": _BUILDS_ITS_OWN,
    "test_heartbeat.py::test_fail_stale_trials_with_race_condition": _BUILDS_ITS_OWN,
    "test_heartbeat.py::test_get_stale_trial_ids": _BUILDS_ITS_OWN,
    "test_storages.py::TestStorage::test_create_new_study_unique_id[sqlite]": (
        "SQLite hands a deleted study's id to the next study (Optuna's own RDBStorage is "
        "exempted from this check for that reason, by class; the project's storage is an RDB "
        "storage under another class)"
    ),
}
"""Tests of the suite that cannot apply to the project's storage, by node id (a prefix of
it, relative to the suite's folder), with the reason."""


def load(name: str) -> dict[str, Any]:
    """The public names of the suite's module ``name`` (its tests and fixtures), for the
    module of the same name here to take; a stand-in test that skips (fails in CI) with the
    reason when the suite was not fetched."""
    path = SUITE / name
    if not path.is_file():

        def test_optunas_storage_suite_is_fetched() -> None:
            need(False, f"Optuna's storage tests not found at {path}; run make optuna-suite")

        return {"test_optunas_storage_suite_is_fetched": test_optunas_storage_suite_is_fetched}
    spec = importlib.util.spec_from_file_location(f"optuna_suite.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {key: value for key, value in vars(module).items() if not key.startswith("_")}


@pytest.fixture(scope="session", autouse=True)
def _postgres_server() -> Iterator[None]:
    """The PostgreSQL server the suite's databases are created on: CI's, or a throwaway."""
    shared = os.environ.get("RESNET_JOB_POSTGRES_URL")
    if shared:
        supplier.server_url = shared
        yield
        return
    from testkit.postgres import available, throwaway_postgres

    if available()[0] is None:
        yield  # the PostgreSQL tests call need() and skip (or fail in CI) with the reason
        return
    servers = throwaway_postgres()
    server = next(servers)
    supplier.server_url = server.url()
    yield
    servers.close()


@pytest.fixture(autouse=True)
def _postgres_available(request: pytest.FixtureRequest) -> None:
    if "[postgresql" in request.node.name or "-postgresql" in request.node.name:
        need(
            supplier.server_url is not None,
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin and "
            "RESNET_JOB_POSTGRES_URL is not set",
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = item.nodeid.split("optuna_suite/", 1)[-1]
        for prefix, reason in NOT_APPLICABLE.items():
            if where.startswith(prefix):
                item.add_marker(pytest.mark.skip(reason=f"not applicable: {reason}"))
