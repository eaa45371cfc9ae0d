"""A permanent database error ends ``python -m search run`` with exit 6 and one sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

from search.storage import make_storage
from tests.conftest import REPO
from tests.search.helpers import clean_env


def test_a_read_only_study_database_exits_6_at_once_with_one_sentence(tmp_path: Path) -> None:
    database = tmp_path / "study.db"
    optuna.create_study(storage=make_storage(f"sqlite:///{database}"), study_name="other")
    url = f"sqlite:///file:{database}?mode=ro&uri=true"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "search",
            "run",
            "--launcher",
            "local",
            "--output",
            str(tmp_path / "out"),
            "--storage",
            url,
            "--storage-retry",
            "300",
        ],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 6, proc.stderr
    (sentence,) = proc.stderr.strip().splitlines()
    assert "attempt to write a readonly database" in sentence
    assert "make the database writable" in sentence
    assert "Traceback" not in proc.stderr
