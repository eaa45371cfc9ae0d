"""(c) whole-job wall time: a warm run reuses exactly what its cold run prepared."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import runs, tutorial
from job.contract import METRICS_JSON

TINY = runs.WallConfig(0.125, 100, 50, 1, batch_size=50)


@pytest.fixture(scope="module")
def cold_job(
    archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, runs.RunResult]:
    """One cold job run on the tiny archive: its work folder and result."""
    workdir = tmp_path_factory.mktemp("cold-job")
    return workdir, runs.run_job(archives["fastai"], TINY, workdir)


def _replace_archive(archive: Path, dest: Path) -> Path:
    # The same path, rewritten later: the folder holds an extraction of an older file.
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    return archive


def _interrupt(archive: Path, dest: Path) -> Path:
    (dest / tutorial.EXTRACTED_MARKER).unlink()
    return archive


def _other_archive(archive: Path, dest: Path) -> Path:
    other = dest.parent / "other.tgz"
    shutil.copyfile(archive, other)
    return other


@pytest.mark.parametrize(
    ("change", "reusable"),
    [
        (lambda archive, dest: archive, True),
        (_interrupt, False),
        (_replace_archive, False),
        (_other_archive, False),
    ],
    ids=["complete", "interrupted", "archive replaced", "other archive"],
)
def test_only_a_completed_extraction_of_this_archive_is_reused(
    archives: dict[str, Path],
    tmp_path: Path,
    change: Callable[[Path, Path], Path],
    reusable: bool,
) -> None:
    archive = shutil.copyfile(archives["fastai"], tmp_path / "cifar10.tgz")
    dest = tmp_path / "png"
    tutorial.extract(archive, dest)
    assert tutorial.is_extracted(change(archive, dest), dest) is reusable


@pytest.mark.slow
def test_warm_tutorial_reads_the_cold_runs_pngs(archives: dict[str, Path], tmp_path: Path) -> None:
    cold = runs.run_tutorial(archives["fastai"], TINY, tmp_path)
    warm = runs.run_tutorial(archives["fastai"], TINY, tmp_path, warm=True)
    assert (cold.details["reused_extraction"], warm.details["reused_extraction"]) == (False, True)


@pytest.mark.slow
def test_warm_job_trains_the_same_on_the_cold_runs_cache(
    archives: dict[str, Path], cold_job: tuple[Path, runs.RunResult]
) -> None:
    workdir, cold = cold_job
    warm = runs.run_job(archives["fastai"], TINY, workdir, warm=True)
    # On CPU the same SEED gives identical histories; the warm run's output is its own.
    assert warm.val_acc == cold.val_acc
    assert (workdir / "output-warm" / METRICS_JSON).is_file()


@pytest.mark.slow
def test_warm_job_that_rebuilds_the_cache_is_refused(
    archives: dict[str, Path], cold_job: tuple[Path, runs.RunResult], tmp_path: Path
) -> None:
    shutil.copytree(cold_job[0] / "data", tmp_path / "data")
    for cache in (tmp_path / "data").glob("*.npz"):
        # The checksum written beside the cache: one that fails makes the job rebuild it.
        cache.with_suffix(".sha256").write_text("0" * 64)
    with pytest.raises(RuntimeError, match="rebuilt its decoded cache"):
        runs.run_job(archives["fastai"], TINY, tmp_path, warm=True)


def test_warm_job_needs_a_cold_run_first(archives: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no decoded cache"):
        runs.run_job(archives["fastai"], TINY, tmp_path, warm=True)
