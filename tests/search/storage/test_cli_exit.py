"""A database that fails for good ends ``python -m search run`` with one sentence: exit 6
when the database is unusable (read-only here), exit 2 when --storage names no usable file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.storage import make_storage
from tests.conftest import REPO
from tests.search.helpers import clean_env


def _with_a_study(database: Path) -> None:
    optuna.create_study(
        storage=make_storage(f"sqlite:///{database}", retry_seconds=60), study_name="other"
    )


def _empty(database: Path) -> None:
    database.write_bytes(b"")


def _missing(database: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("prepare", "code", "words"),
    [
        (_with_a_study, 6, "make the database writable"),
        (_empty, 6, "make the database writable"),
        (_missing, 2, "unable to open database file"),
    ],
    ids=["a study in it", "an empty file", "no file"],
)
def test_a_read_only_study_database_ends_the_run_at_once_with_one_sentence(
    tmp_path: Path, prepare, code: int, words: str
) -> None:
    database = tmp_path / "study.db"
    prepare(database)
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
    assert proc.returncode == code, proc.stderr
    (sentence,) = proc.stderr.strip().splitlines()
    assert words in sentence
    assert "Traceback" not in proc.stderr
