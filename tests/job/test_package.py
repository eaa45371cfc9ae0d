"""The package's lazy re-exports (job/__init__.py): every name resolves, none loads torch early."""

from __future__ import annotations

import subprocess
import sys

import pytest

import job
from tests.conftest import REPO


def test_all_lists_exactly_the_lazy_names() -> None:
    assert sorted(job.__all__) == sorted(job._EXPORTS)


@pytest.mark.parametrize("name", sorted(job._EXPORTS))
def test_each_name_resolves_to_its_modules_object(name: str) -> None:
    module = __import__(job._EXPORTS[name], fromlist=[name])
    assert getattr(job, name) is getattr(module, name)


def test_importing_the_package_loads_nothing_of_it() -> None:
    probe = "import sys, job; print(sorted(m for m in sys.modules if m.startswith('job')))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['job']"
